"""The exact Gaussian-mixture teachers as registered adapters.

"gmm-ring" is the 2-D, 8-mode ring; the generated mixtures (`sid_ray.toys.mixture_family`) are
registered by preset name ("gmm-d5") and by spec ("gmm:dim=5,modes=6,seed=1", any name with the
"gmm:" prefix), so a config's `model.name` picks any of them.

Prompts are class names: "mode 3" (or "class 3") conditions on class 3, "" (or "null") is the
null condition.
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
from sid_ray.models.registry import register, register_prefix
from sid_ray.toys.gaussian_mixture import (
    ExactMixtureTeacher,
    GaussianMixture,
    label_conditioning,
    ring_mixture,
)
from sid_ray.toys.mixture_family import PRESETS, SPEC_PREFIX, generated_mixture, parse_spec
from sid_ray.toys.mlp import LabelMLPVelocity

RING = "gmm-ring"


def mixture_named(name: str) -> GaussianMixture:
    """The exact mixture behind a registered name: the ring, a preset or a 'gmm:' spec."""
    if name == RING:
        return ring_mixture()
    try:
        return generated_mixture(parse_spec(name))
    except ValueError as err:
        raise ConfigError(f"model.name: {err}") from None


class GaussianMixtureAdapter(TeacherAdapter):
    name = RING  # the instance's name is its model.name
    family = "gmm"

    def __init__(
        self,
        config: ModelConfig | None = None,
        sid: SiDConfig | None = None,
        width: int = 256,
        depth: int = 4,
    ):
        # `sid` is the registry's argument; the exact toy teacher needs nothing from that section
        self.name = config.name if config is not None else RING
        self.mixture = mixture_named(self.name)
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
        prior = mixture_named(model.name).class_prior
        counts = (prior / prior.min()).round().long().tolist()
        word = "mode" if model.name == RING else "class"  # the ring has one class per mode
        prompts = [f"{word} {c}" for c, n in enumerate(counts) for _ in range(n)]
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
            if word not in ("mode", "class") or not 0 <= label < self.mixture.num_classes:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"prompt {prompt!r} is not a class of the {self.name} teacher: use 'class N' with "
                f"N in 0..{self.mixture.num_classes - 1}, or '' for the null condition"
            ) from None
        return label


register(RING, GaussianMixtureAdapter)
for _preset in PRESETS:
    register(_preset, GaussianMixtureAdapter)
register_prefix(SPEC_PREFIX, GaussianMixtureAdapter)
