"""The adapter protocol: everything model-specific about one teacher family, in one object.

An adapter is built from a loaded teacher (or the exact toy teacher) and gives the rest of
sid_ray what it needs without knowing the family:
- `teacher`, and `make_trainable_copy()` for F and G (exact copies of T, shared_base aside),
- `latent_shape`: one sample's latent shape in the layout the velocity takes (FLUX: packed),
- `encode_prompts(prompts)` -> TensorConditioning (with the null/empty-prompt twin),
- `decode(latents)` -> images in [0, 1] (B, 3, H, W); `encode_images(images)` -> latents,
- `export(generator, folder)` -> a stock diffusers pipeline folder sampling in K steps.
Family adapters live in one file each (flux.py, sd3.py, sana.py, gaussian_mixture toy, ...)
and register themselves in `sid_ray.models.registry`, which builds them from the config's model
and SiD sections (`build_adapter(run_config)`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning


class TeacherAdapter(ABC):
    """One teacher family's facts. Subclasses document their timestep scale and latent layout."""

    #: registry name, e.g. "flux-dev"
    name: str = ""

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

    def export(self, generator: FlowModel, folder: str | Path, num_steps: int) -> Path:
        """Write the generator as a folder stock diffusers loads and samples in `num_steps` steps."""
        raise NotImplementedError(f"{type(self).__name__} cannot export")
