"""The family-agnostic part of a diffusers-DiT teacher adapter (FLUX, SD3/SD3.5, SANA).

A family module subclasses two classes:
- `TransformerVelocity` (a FlowModel): how one forward of the diffusers transformer is called
  (timestep scale, position ids, guidance embedding) -> `velocity(x_t, t, cond)`.
- `DiTAdapter` (a TeacherAdapter): which pipeline folder parts it needs, how prompts are encoded
  (`encode_text`), the latent layout (`pack_latents` / `unpack_latents`, identity by default),
  which velocity class each role uses, and the default LoRA target modules.

`DiTAdapter` then provides, for every family: loading through `sid_ray.models.loading`, the frozen
teacher, F and G copies in the three `model.lora.mode`s (full deepcopy, LoRA on copies, one
shared base with two named adapters; see `sid_ray.models.lora`), gradient checkpointing, the
empty-prompt embedding cache, and VAE decode/encode with the family's scaling and shift factors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.adapter import TeacherAdapter
from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning
from sid_ray.models.export import write_pipeline_folder
from sid_ray.models.loading import load_components, torch_dtype
from sid_ray.models.lora import LoraView, SharedLoraBase, add_lora, export_lora, merged_transformer

ROLES = ("teacher", "fake", "generator")


class TransformerVelocity(FlowModel):
    """A diffusers transformer as v(x_t, t, cond), t in (0, 1). Families override `velocity`.

    The transformer is a registered submodule, so `parameters()` of a full copy are all of its
    weights. The roles' LoRA views (`LoraView`) wrap an instance of this class instead.
    """

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype


class DiTAdapter(TeacherAdapter):
    """Shared machinery of diffusers-DiT teachers; see the module docstring for the hooks."""

    #: pipeline folder parts loaded besides the transformer (tokenizers, text encoders, vae, scheduler)
    parts: ClassVar[tuple[str, ...]] = ("scheduler", "vae")
    #: the velocity class of each role (FLUX gives roles different guidance behaviour)
    velocity_class: ClassVar[type[TransformerVelocity]] = TransformerVelocity
    #: LoRA target module names when `model.lora.target_modules` is empty
    default_lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    #: hub id or folder used when `model.path` is empty
    default_path: ClassVar[str] = ""
    #: the stock diffusers pipeline class of the family (export, LoRA saving, prompt encoding)
    pipeline_class: ClassVar[type | None] = None

    def __init__(self, config: ModelConfig, components: dict[str, Any] | None = None):
        self.config = config
        self.dtype = torch_dtype(config.dtype)
        if components is None:
            path = config.path or self.default_path
            if not path:
                raise ConfigError(f"model.path: {config.name} has no default folder; set model.path")
            components = load_components(path, ("transformer", *self.parts), self.dtype)
        self.components = components
        self.transformer: nn.Module = components["transformer"].requires_grad_(False).eval()
        self.vae: nn.Module | None = components.get("vae")
        self._null: dict[str, torch.Tensor] | None = None
        self.shared_base: SharedLoraBase | None = None
        if config.lora.mode == "shared_base":
            # T, F and G all run on this one module from now on (SID.md 2: F and G start as T,
            # since peft initialises LoRA B to zero)
            self.shared_base = SharedLoraBase(self.transformer, config.lora, self.lora_targets())
        self._teacher = self._wrap(self.transformer, "teacher")
        if config.gradient_checkpointing:
            self.set_gradient_checkpointing(True)

    # --- hooks for the families -------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """{name: (B, ...) tensor} prompt embeddings for a batch, as the velocity consumes them."""
        raise NotImplementedError

    def velocity_model(self, transformer: nn.Module, role: str) -> TransformerVelocity:
        """The FlowModel of `role` around `transformer` (override for role-specific behaviour)."""
        return self.velocity_class(transformer)

    def pack_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) VAE latents -> the velocity's layout (identity; FLUX packs 2x2 patches)."""
        return latents

    def unpack_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `pack_latents`."""
        return x

    # --- TeacherAdapter ---------------------------------------------------------------------
    @property
    def teacher(self) -> FlowModel:
        return self._teacher

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel (8 for the SD/FLUX VAEs, 32 for SANA's DC-AE)."""
        if self.vae is None:
            return 8
        cfg = self.vae.config
        if hasattr(cfg, "block_out_channels") and not hasattr(cfg, "encoder_block_types"):
            return 2 ** (len(cfg.block_out_channels) - 1)
        return 2 ** (len(cfg.encoder_block_out_channels) - 1)  # AutoencoderDC

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def latent_size(self) -> int:
        """Latent height = width for `model.resolution`."""
        return self.config.resolution // self.vae_scale_factor

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_channels, self.latent_size, self.latent_size)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def lora_targets(self) -> list[str]:
        return list(self.config.lora.target_modules) or list(self.default_lora_targets)

    def make_trainable_copy(self, role: str) -> FlowModel:
        """F or G (SID.md 2): an exact copy of T whose trainable parameters are what `mode` says.

        full: a deepcopy of the transformer, all weights trainable.
        lora: a deepcopy with one LoRA adapter; the returned view's `parameters()` are the LoRA ones.
        shared_base: a view of the teacher's own module with the role's named adapter active.
        """
        if role not in ("fake", "generator"):
            raise ValueError(f"role must be 'fake' or 'generator', got {role!r}")
        mode = self.config.lora.mode
        if mode == "shared_base":
            return self.shared_base.view(self.velocity_model(self.transformer, role), role)
        transformer = copy.deepcopy(self.transformer)
        if mode == "full":
            return self.velocity_model(transformer.requires_grad_(True), role)
        add_lora(transformer, self.config.lora, self.lora_targets(), "default")
        return LoraView(self.velocity_model(transformer, role), transformer, "default")

    def _wrap(self, transformer: nn.Module, role: str) -> FlowModel:
        if self.shared_base is not None:
            return self.shared_base.view(self.velocity_model(transformer, role), None)
        return self.velocity_model(transformer, role)

    def set_gradient_checkpointing(self, enabled: bool, models: Sequence[FlowModel] = ()) -> None:
        """Recompute activations in backward, on the teacher's module and on `models` (F, G copies).

        In shared_base mode the checkpoint function re-activates, at recompute time, the adapter
        that was active in the forward (otherwise F's blocks would be recomputed with G's adapter).
        """
        modules = [self.transformer] + [m.transformer for m in models if isinstance(m, TransformerVelocity)]
        modules += [m.base for m in models if isinstance(m, LoraView)]
        for module in {id(m): m for m in modules}.values():
            if not enabled:
                module.disable_gradient_checkpointing()
            elif self.shared_base is not None and module is self.transformer:
                module.enable_gradient_checkpointing(self.shared_base.checkpoint_function)
            else:
                module.enable_gradient_checkpointing()

    def encode_prompts(self, prompts: list[str]) -> TensorConditioning:
        """Embeddings of `prompts`, with the empty prompt's (computed once) as the null condition."""
        if self._null is None:
            self._null = self.encode_text([""])
        return TensorConditioning(self.encode_text(list(prompts)), self._null)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the velocity's layout -> images in [0, 1], (B, 3, H, W)."""
        cfg = self.vae.config
        z = self.unpack_latents(latents).to(self.vae.dtype)
        z = z / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
        images = self.vae.decode(z, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents (the posterior's mode for KL VAEs), in the velocity's layout."""
        cfg = self.vae.config
        out = self.vae.encode((images * 2 - 1).to(self.vae.dtype))
        z = out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latent
        z = (z - (getattr(cfg, "shift_factor", None) or 0.0)) * cfg.scaling_factor
        return self.pack_latents(z)

    # --- export -------------------------------------------------------------------------------
    def export_transformer(self, generator: FlowModel) -> nn.Module:
        """G as a plain transformer of the teacher's class (LoRA fused in for the LoRA modes)."""
        if isinstance(generator, LoraView):
            return merged_transformer(generator)
        if isinstance(generator, TransformerVelocity):
            return generator.transformer
        raise TypeError(f"cannot export a {type(generator).__name__}; expected an F/G copy of this adapter")

    def export(self, generator: FlowModel, folder: str | Path, num_steps: int) -> Path:
        """A stock pipeline folder sampling G's K-step roll-out (see `sid_ray.models.export`)."""
        components = {k: v for k, v in self.components.items() if k != "transformer"}
        components["transformer"] = self.export_transformer(generator)
        return write_pipeline_folder(
            self.pipeline_class, components, folder, num_steps, self.config.name, self.export_call_hint
        )

    #: extra arguments the README tells users to pass (e.g. FLUX without a guidance embedding: none)
    export_call_hint: ClassVar[str] = ""

    def export_lora(self, generator: FlowModel, folder: str | Path) -> Path:
        """G's LoRA weights as diffusers safetensors (`pipe.load_lora_weights(folder)` on the teacher)."""
        if not isinstance(generator, LoraView):
            raise TypeError("export_lora needs a LoRA generator (model.lora.mode lora or shared_base)")
        return export_lora(generator, folder, self.pipeline_class, self.config.lora)

    def to(self, device: torch.device | str) -> DiTAdapter:
        """Move every loaded module (create F and G copies after this, or move them too)."""
        for obj in self.components.values():
            if isinstance(obj, nn.Module):
                obj.to(device)
        return self
