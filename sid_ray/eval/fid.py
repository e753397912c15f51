"""FID through torchmetrics, with the feature extractor as a parameter.

torchmetrics' `FrechetInceptionDistance` accepts any `nn.Module` as its `feature`; it then keeps
the running sums and computes the Fréchet distance in float64. Real teachers use the standard
FID InceptionV3 (torch-fidelity's port of the TF graph) from a local weights file; the digits toy
uses its classifier's penultimate layer (`digits_classifier.ClassifierFeatures`).

Every extractor here takes images in [0, 1], (B, 3, H, W), the contract of `adapter.decode`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from sid_ray.config.schema import ConfigError

#: the file torch-fidelity downloads for FID's InceptionV3 (pt_inception-2015-12-05-6726825d.pth);
#: sid_ray never downloads it: point `weights_path` at a local copy
INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


class InceptionFeatures(nn.Module):
    """FID's InceptionV3 pool features (2048) from a local weights file, images in [0, 1]."""

    num_features = 2048

    def __init__(self, weights_path: str | Path):
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise ConfigError(
                f"FID InceptionV3 weights: no file at {str(path)!r}; copy FID's "
                f"{INCEPTION_WEIGHTS_NAME} there (sid_ray does not download weights)"
            )
        if importlib.util.find_spec("torch_fidelity") is None:
            raise ConfigError(
                "FID InceptionV3 weights: Inception FID needs the torch-fidelity package "
                "(pip install torch-fidelity); the digits toy's classifier FID does not"
            )
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.inception = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # the TF-compatible graph wants uint8 0..255 and resizes to 299 itself
        return self.inception((images.clamp(0, 1) * 255).round().to(torch.uint8))


class FeatureFID:
    """FID between a fixed real set and generated sets, in an extractor's feature space.

    The real statistics are computed once (`add_real`); `reset_fake` starts a new generated set
    against them, so one object scores every checkpoint of a run.
    """

    def __init__(self, features: nn.Module, batch_size: int = 256):
        if not isinstance(getattr(features, "num_features", None), int):
            raise TypeError("the FID feature extractor needs an int attribute `num_features`")
        self.batch_size = batch_size
        self.metric = FrechetInceptionDistance(feature=features, reset_real_features=False)
        self.metric.requires_grad_(False)

    def _update(self, images: torch.Tensor, real: bool) -> None:
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                self.metric.update(images[start : start + self.batch_size], real=real)

    def add_real(self, images: torch.Tensor) -> None:
        self._update(images, real=True)

    def add_fake(self, images: torch.Tensor) -> None:
        self._update(images, real=False)

    def reset_fake(self) -> None:
        self.metric.reset()  # keeps the real statistics (reset_real_features=False)

    @property
    def num_real(self) -> int:
        return int(self.metric.real_features_num_samples)

    def compute(self) -> float:
        return float(self.metric.compute())


class PassThroughFeatures(nn.Module):
    """Feature vectors given directly (B, D) -> (B, D): FID of precomputed features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.reshape(features.shape[0], -1)


def frechet_distance_of_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of two feature sets (N, D) and (M, D), computed by torchmetrics."""
    fid = FeatureFID(PassThroughFeatures(real.shape[1]))
    fid.add_real(real)
    fid.add_fake(fake)
    return fid.compute()
