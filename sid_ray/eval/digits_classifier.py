"""A small CNN that reads the digits world: the toy's FID features and its alignment metric.

For real teachers FID uses InceptionV3 features and alignment is a CLIP score. Neither means
anything on 16x16 grey digits, so the toy uses a classifier the project trains itself (seconds on
a CPU, deterministic): its penultimate layer is the FID feature space, and the probability it gives
the prompted digit is the alignment metric (`prompted_digit_probability`), named for what it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sid_ray.config import paths
from sid_ray.toys.digits_data import (
    DIGITS_RESOLUTION,
    NUM_DIGITS,
    load_digit_images,
    train_test_split_indices,
)


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that determines the trained classifier (its hash names the cache file)."""

    resolution: int = DIGITS_RESOLUTION
    width: int = 32
    feature_dim: int = 64
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    test_fraction: float = 0.2
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class DigitsClassifier(nn.Module):
    """Images (B, 3, R, R) in [0, 1] -> logits (B, 10); `features` gives the penultimate layer."""

    def __init__(self, recipe: ClassifierRecipe = ClassifierRecipe()):
        super().__init__()
        self.resolution = recipe.resolution
        w = recipe.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1, stride=2),
            nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2),
            nn.GELU(),
            nn.Flatten(),
            nn.Linear(2 * w * (recipe.resolution // 4) ** 2, recipe.feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(recipe.feature_dim, NUM_DIGITS)

    def _grey(self, images: torch.Tensor) -> torch.Tensor:
        # generators' RGB outputs need not be exactly grey: read their mean brightness; resize so
        # the classifier also reads other resolutions of the same world
        x = images.float().mean(dim=1, keepdim=True)
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="area")
        return x * 2 - 1

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self._grey(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class ClassifierFeatures(nn.Module):
    """The classifier's penultimate layer as a torchmetrics FID feature extractor."""

    def __init__(self, classifier: DigitsClassifier):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        # torchmetrics reads `num_features` instead of pushing a dummy 299x299 image through
        self.num_features = classifier.head.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier.features(images)


def train_digits_classifier(recipe: ClassifierRecipe = ClassifierRecipe()) -> tuple[DigitsClassifier, float]:
    """Train on a fixed split of sklearn's digits; returns (classifier, held-out accuracy).

    Deterministic: the seed fixes the split, the initialisation and the batch order.
    """
    images, labels = load_digit_images(recipe.resolution)
    train_idx, test_idx = train_test_split_indices(len(labels), recipe.test_fraction, recipe.seed)
    # enable_grad: callers may train it lazily from inside their own no_grad evaluation code
    with torch.random.fork_rng(devices=[]), _single_thread(), torch.enable_grad():
        torch.manual_seed(recipe.seed)
        model = DigitsClassifier(recipe)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        order_gen = torch.Generator().manual_seed(recipe.seed + 1)
        shift_gen = torch.Generator().manual_seed(recipe.seed + 2)
        model.train()
        for _ in range(recipe.epochs):
            order = train_idx[torch.randperm(len(train_idx), generator=order_gen)]
            for start in range(0, len(order), recipe.batch_size):
                batch = order[start : start + recipe.batch_size]
                x = _jitter(images[batch], shift_gen)
                loss = F.cross_entropy(model(x), labels[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.eval()
    return model, classifier_accuracy(model, images[test_idx], labels[test_idx])


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    # a 100k-parameter CNN gains nothing from intra-op threads, and on a shared 2-core machine
    # they made training 10x slower (100 s vs 9 s); restored afterwards, as it is process-global
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to one pixel: generated digits are not centred like sklearn's."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


@torch.no_grad()
def classifier_accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(dim=1) == labels).float().mean())


@torch.no_grad()
def prompted_digit_probability(
    classifier: DigitsClassifier, images: torch.Tensor, digits: torch.Tensor
) -> torch.Tensor:
    """p(prompted digit | image) under the classifier, one value per image (B,).

    The toy's text-image alignment metric: the mean over a prompt set, times 100, plays the role
    the CLIP score plays for real teachers.
    """
    probs = classifier(images).softmax(dim=1)
    return probs.gather(1, digits.long().view(-1, 1)).squeeze(1)


def load_digits_classifier(
    recipe: ClassifierRecipe = ClassifierRecipe(), cache_dir: str | Path | None = None
) -> DigitsClassifier:
    """The trained classifier, trained on first use and cached as safetensors (keyed by recipe)."""
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    path = folder / f"digits_classifier_{recipe.key()}.safetensors"
    model = DigitsClassifier(recipe)
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model.eval()
    trained, _ = train_digits_classifier(recipe)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(trained.state_dict(), tmp)
    tmp.replace(path)  # atomic, so two processes training at once never read half a file
    return trained
