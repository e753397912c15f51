"""Per-chunk scores that add up over ranks: FID features and alignment sums.

An evaluation split over ranks needs metrics whose parts combine: each rank turns its images into
FID features and a sum of per-image alignment, rank 0 concatenates the features and scores them
against the reference statistics (`reference_stats.fid_against`). The single-process evaluation
(`jobs/evaluate.py`) runs the same code with one part, so both give the same numbers on the same
images. Metric names (`eval_fid`, `eval_<alignment_key>`) are the same in training rows, MLflow,
Ray Tune and the evaluation job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.eval.prompts import PromptSet
from sid_ray.eval.reference_stats import ReferenceStats, fid_against

#: teachers whose world the project's digits classifier reads
DIGITS_TEACHERS = ("digits-flux",)
FID_KEY = "eval_fid"


@dataclass
class ScoreParts:
    """One chunk's share of an evaluation: FID features (n, D) on the CPU, alignment summed."""

    features: torch.Tensor
    alignment_sum: float
    count: int


class SampleScorer(Protocol):
    alignment_key: str  # e.g. "prompted_digit_probability": the metric is eval_<key>
    alignment_name: str  # with its unit, for tables and plots
    reference: ReferenceStats

    def parts(self, images: torch.Tensor, prompts: PromptSet) -> ScoreParts: ...


def combine(scorer: SampleScorer, parts: Sequence[ScoreParts]) -> dict[str, float]:
    """The evaluation's metrics from every chunk's parts (any order)."""
    features = torch.cat([p.features for p in parts])
    count = sum(p.count for p in parts)
    return {
        FID_KEY: fid_against(scorer.reference, features),
        f"eval_{scorer.alignment_key}": sum(p.alignment_sum for p in parts) / count,
        "eval_num_samples": float(count),
    }


class DigitsScorer:
    """The digits world: the project classifier's features (FID against all 1,797 sklearn digits)
    and the probability, in percent, of the prompted digit."""

    alignment_key = "prompted_digit_probability"
    alignment_name = "prompted-digit probability (%)"

    def __init__(self):
        from sid_ray.eval.digits_classifier import ClassifierFeatures, load_digits_classifier
        from sid_ray.toys.digits_data import load_digit_images

        self.classifier = load_digits_classifier()
        self.features = ClassifierFeatures(self.classifier)
        real, _ = load_digit_images(self.classifier.resolution)
        self.reference = ReferenceStats.of_features(self.features(real), "digits-classifier")

    @torch.no_grad()
    def parts(self, images: torch.Tensor, prompts: PromptSet) -> ScoreParts:
        from sid_ray.eval.digits_classifier import prompted_digit_probability
        from sid_ray.toys.digits_data import digit_of_prompt

        images = images.float().cpu()
        digits = prompts.digits or tuple(digit_of_prompt(p) for p in prompts.prompts)
        probs = prompted_digit_probability(self.classifier, images, torch.tensor(digits))
        return ScoreParts(self.features(images).double(), 100.0 * float(probs.sum()), len(images))


class RealTeacherScorer:
    """Real teachers: FID's InceptionV3 features against a reference-statistics file, and the
    CLIP score, both from local files (sid_ray downloads no weights)."""

    alignment_key = "clip_score"
    alignment_name = "CLIP score"

    def __init__(self, reference: str, inception_weights: str, clip_model: str, device="cpu"):
        from sid_ray.eval.clip_score import LocalCLIPScore
        from sid_ray.eval.fid import InceptionFeatures

        self.reference = ReferenceStats.load(reference)
        self.device = torch.device(device)
        self.inception = InceptionFeatures(inception_weights).to(self.device).eval()
        self.clip = LocalCLIPScore(clip_model)
        # a rank's own chunks only: torchmetrics would otherwise sum its state over the process
        # group inside compute(), which the chunks' gather (generator_eval) already does
        self.clip.metric.sync_on_compute = False
        self.clip.metric.to(self.device)

    @torch.no_grad()
    def parts(self, images: torch.Tensor, prompts: PromptSet) -> ScoreParts:
        images = images.float().to(self.device)
        features = self.inception(images).double().cpu()
        mean = self.clip(images, list(prompts.prompts))
        return ScoreParts(features, mean * len(images), len(images))


def scorer_for(config: RunConfig, device="cpu") -> SampleScorer:
    """The digits classifier for the digits teacher; Inception + CLIP from eval's files otherwise."""
    if config.model.name in DIGITS_TEACHERS:
        return DigitsScorer()
    ev = config.eval
    missing = [n for n in ("fid_reference", "inception_weights", "clip_model") if not getattr(ev, n)]
    if missing:
        raise ConfigError(
            f"eval: evaluating {config.model.name} needs local files: set "
            + ", ".join(f"eval.{n}" for n in missing)
            + " (README: 'Sweeps' says where to get them)"
        )
    for name in ("fid_reference", "inception_weights", "clip_model"):
        if not Path(getattr(ev, name)).exists():
            raise ConfigError(f"eval.{name}: {getattr(ev, name)!r} does not exist")
    return RealTeacherScorer(ev.fid_reference, ev.inception_weights, ev.clip_model, device)
