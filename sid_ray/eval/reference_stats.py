"""FID's reference statistics (mu, sigma of a real image set's features) as a file, and FID
of generated features against them.

Real teachers' reference sets are large (tens of thousands of images); their Inception features
are computed once (`jobs/evaluate.py --reference-stats`) and every evaluation reads the file.
The Fréchet distance itself is torchmetrics': its FID metric is given the reference's sums back
(sum = n mu, cov_sum = (n - 1) sigma + n mu mu^T, exactly what its own `update` accumulates), so
the numbers are those of torchmetrics on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torchmetrics.image.fid import FrechetInceptionDistance

from sid_ray.config.schema import ConfigError
from sid_ray.eval.fid import PassThroughFeatures


@dataclass
class ReferenceStats:
    """Mean (D,) and covariance (D, D) of a real set's features, float64, and its size."""

    mu: torch.Tensor
    sigma: torch.Tensor
    num: int
    features: str = ""  # which extractor made them (a file for one must not score another)

    @classmethod
    def of_features(cls, features: torch.Tensor, name: str = "") -> ReferenceStats:
        f = features.double().reshape(features.shape[0], -1)
        if f.shape[0] < 2:
            raise ValueError("reference statistics need at least 2 images")
        return cls(f.mean(dim=0), torch.cov(f.t()), int(f.shape[0]), name)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"mu": self.mu.contiguous(), "sigma": self.sigma.contiguous()}
        save_file(tensors, path, metadata={"num": str(self.num), "features": self.features})
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceStats:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"FID reference statistics: no file at {str(path)!r}; compute it from real images with "
                "python jobs/evaluate.py --reference-stats <file> --images <folder or shards>"
            )
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
        return cls(
            tensors["mu"].double(), tensors["sigma"].double(), int(meta["num"]), meta.get("features", "")
        )


def fid_against(reference: ReferenceStats, features: torch.Tensor) -> float:
    """FID of generated features (N, D) against `reference`, computed by torchmetrics."""
    dim = reference.mu.shape[0]
    if features.shape[-1] != dim:
        raise ValueError(f"features of width {features.shape[-1]} against a reference of width {dim}")
    # sync_on_compute off: inside a process group (the Ray workers) torchmetrics would add every
    # rank's states together, and each rank already holds all the gathered features
    metric = FrechetInceptionDistance(
        feature=PassThroughFeatures(dim), reset_real_features=False, sync_on_compute=False
    )
    n, mu = reference.num, reference.mu.double()
    metric.real_features_sum = mu * n
    metric.real_features_cov_sum = reference.sigma.double() * (n - 1) + n * torch.outer(mu, mu)
    metric.real_features_num_samples = torch.tensor(n, dtype=torch.long)
    metric.update(features.double(), real=False)
    return float(metric.compute())
