"""The exact Gaussian-mixture teacher as a registered adapter ("gmm-ring").

Prompts are class names: "mode 3" conditions on class 3, "" (or "null") is the null condition.
F and G are label-conditioned MLPs; they start as copies of the teacher only after being fitted
to its velocity (`sid_ray.toys.fit_teacher`), since an MLP cannot be a literal copy of a formula.
"""

from __future__ import annotations

import copy

import torch

from sid_ray.config.schema import ConfigError, ModelConfig, SiDConfig
from sid_ray.models.adapter import TeacherAdapter
from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning
from sid_ray.models.registry import register
from sid_ray.toys.gaussian_mixture import ExactMixtureTeacher, label_conditioning, ring_mixture
from sid_ray.toys.mlp import LabelMLPVelocity


class GaussianMixtureAdapter(TeacherAdapter):
    name = "gmm-ring"
    family = "gmm"

    def __init__(
        self,
        config: ModelConfig | None = None,
        sid: SiDConfig | None = None,
        width: int = 256,
        depth: int = 4,
    ):
        # `sid` is the registry's argument; the exact toy teacher needs nothing from that section
        self.mixture = ring_mixture()
        self._teacher = ExactMixtureTeacher(self.mixture)
        self.width, self.depth = width, depth
        self.fit_steps = config.toy_fit_steps if config is not None else ModelConfig().toy_fit_steps
        self._fitted: LabelMLPVelocity | None = None

    @property
    def teacher(self) -> FlowModel:
        return self._teacher

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.mixture.dim,)

    def make_trainable_copy(self, role: str) -> FlowModel:
        """An MLP fitted to the exact velocity (fitted once, cached); F and G get equal copies."""
        if self._fitted is None:
            from sid_ray.toys.fit_teacher import fit_to_teacher

            self._fitted = LabelMLPVelocity(
                self.mixture.dim, self.mixture.num_classes, self.width, self.depth
            )
            fit_to_teacher(self._teacher, self._fitted, steps=self.fit_steps, cache_key=self.name)
        return copy.deepcopy(self._fitted)

    @classmethod
    def default_prompts(cls, model: ModelConfig) -> list[str]:
        """Class prompts in proportion to the class prior, plus 20% null prompts."""
        prior = ring_mixture().class_prior
        counts = (prior / prior.min()).round().long().tolist()
        prompts = [f"mode {c}" for c, n in enumerate(counts) for _ in range(n)]
        return prompts + [""] * (len(prompts) // 4)

    def encode_prompts(self, prompts: list[str]) -> TensorConditioning:
        return label_conditioning(torch.tensor([self.label_of(p) for p in prompts]), self.mixture.num_classes)

    def label_of(self, prompt: str) -> int:
        text = prompt.strip().lower()
        if text in ("", "null"):
            return self.mixture.num_classes
        try:
            word, number = text.split()
            label = int(number)
            if word != "mode" or not 0 <= label < self.mixture.num_classes:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"prompt {prompt!r} is not a class of the gmm-ring teacher: use 'mode N' with "
                f"N in 0..{self.mixture.num_classes - 1}, or '' for the null condition"
            ) from None
        return label


register("gmm-ring", GaussianMixtureAdapter)
