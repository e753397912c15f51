"""The adapter protocol: everything model-specific about one teacher family, in one object.

An adapter is built from a loaded teacher (or the exact toy teacher) and gives the rest of
sid_ray what it needs without knowing the family:
- `teacher`, and `make_trainable_copy()` for F and G (exact copies of T, shared_base aside),
- `latent_shape`: one sample's latent shape in the layout the velocity takes (FLUX: packed),
- `encode_prompts(prompts)` -> TensorConditioning (with the null/empty-prompt twin),
- `decode(latents)` -> images in [0, 1] (B, 3, H, W); `encode_images(images)` -> latents,
- `export(generator, folder)` -> a stock diffusers pipeline folder sampling in K steps.
What differs between teachers beyond that is a capability here, with the default most teachers
want, so that jobs, training and evaluation ask the adapter and never test its name or type:
`family`, `exports_pipeline`, `default_prompts`, `ensure_images` (class-level: answered before
any weights load), `device`, `to`, `set_gradient_checkpointing`.
Family adapters live in one file each (models/flux.py, sd3.py, sana.py; the toys in
`sid_ray.toys`) and register their class in `sid_ray.models.registry`, which builds them from the
config's model and SiD sections (`build_adapter(run_config)`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch

from sid_ray.config.schema import ModelConfig
from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning


class TeacherAdapter(ABC):
    """One teacher family's facts. Subclasses document their timestep scale and latent layout."""

    #: registry name, e.g. "flux-dev"
    name: str = ""
    #: the pipeline family, e.g. "flux" for flux-dev, flux-tiny and the digits teacher: the job
    #: scripts of one family (jobs/distill_flux.py) accept its teachers and no others
    family: ClassVar[str] = ""
    #: `export` writes a stock diffusers pipeline folder; False (the exact toy teachers): the
    #: generator's safetensors file is the whole export
    exports_pipeline: ClassVar[bool] = False

    @classmethod
    def default_prompts(cls, model: ModelConfig) -> list[str] | None:
        """The teacher's own prompts when it draws only a closed set (the toys' class prompts),
        used when `data.prompts` is empty; None: the run's prompts come from `data.prompts`.

        A class method, so the Ray driver can ask before any worker starts or weights load."""
        return None

    @classmethod
    def ensure_images(cls, images: str) -> None:
        """Make `data.images` ready before training reads it (class-level, like `default_prompts`).

        A teacher with a world of its own (the digits) writes its image-text shards there on
        first use; every other teacher reads the user's shards as they are."""
        return None

    @classmethod
    def image_encoder(cls, config: ModelConfig) -> TeacherAdapter:
        """An adapter that `encode_images` works on, holding as little as the family allows (the
        data-aided encode actors build one). By default the whole teacher; DiT families load the
        VAE alone."""
        return cls(config)

    @classmethod
    def text_encoder(cls, config: ModelConfig) -> TeacherAdapter:
        """An adapter that `encode_prompts` works on, holding as little as the family allows (the
        embedding job's actors build one). By default the whole teacher; DiT families load the
        tokenizers and text encoders alone."""
        return cls(config)

    @property
    def text_max_length(self) -> int | None:
        """Tokens per prompt of the main text encoder (the pipelines' `max_sequence_length`); None:
        the teacher has no tokenizer (the exact mixtures read class names)."""
        return None

    @property
    def device(self) -> torch.device:
        """Where the teacher runs, so evaluation samples there; a formula teacher is on the CPU."""
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> TeacherAdapter:
        """Move the loaded networks to `device`; returns self. A teacher with nothing to move (the
        exact mixture, a formula kept on the CPU) stays as it is."""
        return self

    def set_gradient_checkpointing(self, enabled: bool, models: Sequence[FlowModel] = ()) -> None:
        """Recompute activations in the backward pass of T and of `models` (F, G) to save memory.
        Networks too small to gain from it (the toys' MLPs) ignore the request."""
        return None

    @property
    @abstractmethod
    def teacher(self) -> FlowModel:
        """The frozen teacher T (velocity model, t in (0, 1))."""

    @abstractmethod
    def make_trainable_copy(self, role: str) -> FlowModel:
        """A trainable copy of T for `role` in {"fake", "generator"} (LoRA modes: an adapter)."""

    @property
    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """One sample's latent shape in the layout `velocity` takes."""

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> TensorConditioning:
        """Prompt embeddings for a batch, with the empty prompt as the null condition."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], (B, 3, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> latents in the velocity's layout."""
        raise NotImplementedError(f"{type(self).__name__} has no image encoder")

    def export(
        self, generator: FlowModel, folder: str | Path, num_steps: int, time_shift: float = 1.0
    ) -> Path:
        """Write the generator as a folder stock diffusers loads and samples in `num_steps` steps at
        the roll-out times shifted by `time_shift` (`sid.rollout_time_shift`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot export")
