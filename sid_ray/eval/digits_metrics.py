"""The digits toy's `QualityMetrics`: classifier-feature FID and prompted-digit probability.

The FID reference is all 1,797 sklearn digits at the world's resolution; alignment is the mean
probability, in percent, that the project's classifier gives the digit each prompt names.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sid_ray.eval.digits_classifier import (
    ClassifierFeatures,
    DigitsClassifier,
    load_digits_classifier,
    prompted_digit_probability,
)
from sid_ray.eval.fid import FeatureFID
from sid_ray.eval.prompts import PromptSet
from sid_ray.toys.digits_data import digit_of_prompt, load_digit_images


class DigitsQuality:
    alignment_name = "prompted-digit probability (%)"

    def __init__(self, classifier: DigitsClassifier | None = None, cache_dir: str | Path | None = None):
        self.classifier = (
            classifier if classifier is not None else load_digits_classifier(cache_dir=cache_dir)
        )
        self._fid = FeatureFID(ClassifierFeatures(self.classifier))
        real, _ = load_digit_images(self.classifier.resolution)
        self._fid.add_real(real)

    def fid(self, images: torch.Tensor) -> float:
        self._fid.reset_fake()
        self._fid.add_fake(images)
        return self._fid.compute()

    @torch.no_grad()
    def alignment(self, images: torch.Tensor, prompts: PromptSet) -> float:
        digits = prompts.digits
        if digits is None:
            digits = tuple(digit_of_prompt(p) for p in prompts.prompts)
        probs = prompted_digit_probability(self.classifier, images, torch.tensor(digits))
        return 100.0 * float(probs.mean())
