"""The family-agnostic part of a diffusers-DiT teacher adapter (FLUX, SD3/SD3.5, SANA).

A family module subclasses two classes:
- `TransformerVelocity` (a FlowModel): how one forward of the diffusers transformer is called
  (timestep scale, position ids, guidance embedding) -> `velocity(x_t, t, cond)`.
- `DiTAdapter` (a TeacherAdapter): its text parts and stock pipeline class, how prompts are
  encoded (`encode_text`, and `encode_null` for the unconditional), the latent layout
  (`pack_latents` / `unpack_latents`, identity by default), which velocity each role uses, the
  default LoRA targets, and checks of the settings against the checkpoint (`check_checkpoint`).
  Families whose registered names differ only in data (SD3, SANA) subclass `VariantDiTAdapter`
  and describe each name with a `Variant`.

`DiTAdapter` then provides, for every family: loading through `sid_ray.models.loading` (settings
checked against the checkpoint's configs before any weight is read), the frozen teacher, F and G
copies in the three `model.lora.mode`s (full deepcopy, LoRA on copies, one shared base with two
named adapters; see `sid_ray.models.lora`), gradient checkpointing, prompt encoding through the
stock pipeline's own `encode_prompt`, the null-prompt cache, VAE decode/encode with the family's
scaling and shift factors, and export as a stock pipeline folder.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sid_ray.config.schema import ConfigError, LoraConfig, ModelConfig, SiDConfig
from sid_ray.models.adapter import TeacherAdapter
from sid_ray.models.base import FlowModel
from sid_ray.models.blocks import evenly_spread, repeated_blocks
from sid_ray.models.conditioning import TensorConditioning
from sid_ray.models.export import Gather, StreamedTransformer, no_gather, write_pipeline_folder
from sid_ray.models.loading import load_components, read_part_config, resolve_folder, torch_dtype
from sid_ray.models.lora import LoraView, SharedLoraBase, add_lora, export_lora, merged_state_tensors
from sid_ray.models.random_weights import random_transformer, tiny_parts
from sid_ray.models.registry import register

ROLES = ("teacher", "fake", "generator")


def fp32_timestep(t: torch.Tensor | float, batch: int, scale: float) -> torch.Tensor:
    """(B,) float32 `scale * t`: the transformer's timestep for flow time t.

    float32 even when the model runs in bf16: bf16 would round 1000 * t to 8 significant bits,
    and the stock pipelines also pass fp32 timesteps (the models cast after their sinusoidal
    embedding).
    """
    t = torch.as_tensor(t).float()
    return (scale * t).expand(batch) if t.ndim == 0 else scale * t


def checkpoint_unless_trained(recomputed_anyway: frozenset[int] = frozenset()):
    """A `gradient_checkpointing_func` for one network's own module: recompute a block in the
    backward only when none of its weights takes a gradient now (a frozen teacher or F), or
    when it is one of `recomputed_anyway` (ids of blocks, `model.checkpoint_trained_share`)."""

    def checkpoint_function(block: nn.Module, *args, **kwargs):
        if id(block) not in recomputed_anyway and any(p.requires_grad for p in block.parameters()):
            return block(*args, **kwargs)
        return checkpoint(block, *args, use_reentrant=False, **kwargs)

    return checkpoint_function


def vae_scale_factor_of(vae_config: Mapping[str, Any]) -> int | None:
    """Pixels per latent pixel from a VAE config (None if the config names no stages)."""
    # AutoencoderDC (SANA's DC-AE) names its stages per side; AutoencoderKL has one list
    blocks = vae_config.get("encoder_block_out_channels") or vae_config.get("block_out_channels")
    return 2 ** (len(blocks) - 1) if blocks else None


@dataclass(frozen=True)
class Variant:
    """One registered teacher of a `VariantDiTAdapter` family (a release or the tiny test model)."""

    name: str
    #: hub id used when model.path is empty ("" = model.path is required)
    default_path: str
    #: the transformer's architecture, for random-weight models (`model.init=random`: benchmarks,
    #: meta-device tests); the released one, or the tiny test model's
    transformer_config: dict[str, Any] | None = field(default=None, hash=False)


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

    exports_pipeline: ClassVar[bool] = True
    #: tokenizers and text encoders the family's `encode_prompt` needs (loaded with the rest)
    text_parts: ClassVar[tuple[str, ...]] = ()
    #: the velocity class of each role (FLUX overrides `velocity_model` instead: roles differ)
    velocity_class: ClassVar[type[TransformerVelocity]] = TransformerVelocity
    #: LoRA target module names when `model.lora.target_modules` is empty
    default_lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    #: hub id or folder used when `model.path` is empty
    default_path: ClassVar[str] = ""
    #: the diffusers transformer class (`model.init=random` builds it from its released config)
    transformer_class: ClassVar[type | None] = None
    #: the stock diffusers pipeline class of the family (export, LoRA saving, prompt encoding)
    pipeline_class: ClassVar[type | None] = None
    #: call arguments the export README adds for the family (e.g. guidance_scale=1.0 where the
    #: pipeline's default would run CFG on the generator); `export_call_arguments` adds the run's
    export_call_extras: ClassVar[dict[str, Any]] = {}
    #: where the stock pipeline draws each step's fresh noise, for the export README: "global"
    #: (torch's global generator; the pipeline calls `scheduler.step` without one) or "call"
    #: (the pipeline hands the call's `generator` to `scheduler.step`)
    step_noise_source: ClassVar[Literal["global", "call"]] = "global"

    def __init__(
        self,
        config: ModelConfig,
        components: dict[str, Any] | None = None,
        sid: SiDConfig | None = None,
    ):
        # Subclasses set what `velocity_model` reads (FLUX: roles, SANA: variant) BEFORE calling
        # this constructor, since it wraps the teacher at its end.
        self.config = config
        self.sid = sid or SiDConfig()
        self.dtype = torch_dtype(config.dtype)
        self._text_pipeline = None
        if components is None and config.init == "random":
            components = self.random_components()
        if components is None:
            path = config.path or self.default_path
            if not path:
                raise ConfigError(f"model.path: {config.name} has no default folder; set model.path")
            folder = resolve_folder(path, self.loaded_parts)
            # a bad setting fails here, from two small json files, not after minutes of loading
            self.check_checkpoint(read_part_config(folder, "transformer"), read_part_config(folder, "vae"))
            components = load_components(folder, self.loaded_parts, self.dtype)
        else:
            vae = components.get("vae")
            self.check_checkpoint(dict(components["transformer"].config), dict(vae.config) if vae else {})
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

    @classmethod
    def teacher_folder(cls, config: ModelConfig) -> str:
        """`model.path`, or the family's default folder or hub id."""
        return config.path or cls.default_path

    @classmethod
    def image_encoder(cls, config: ModelConfig) -> DiTAdapter:
        """The VAE, tokenizers and scheduler loaded, no text encoder: `encode_images` needs the VAE
        and the latent layout only (FLUX.1-dev: 0.08 B parameters loaded instead of 16.9 B)."""
        tokenizers = tuple(p for p in cls.text_parts if not p.startswith("text_encoder"))
        return cls._without_transformer(config, ("scheduler", "vae", *tokenizers), text_encoders=False)

    @classmethod
    def text_encoder(cls, config: ModelConfig) -> DiTAdapter:
        """The tokenizers and text encoders loaded, no VAE: what `encode_prompts` needs (the
        embedding job's actors; FLUX.1-dev: 4.9 B parameters instead of 16.9 B)."""
        return cls._without_transformer(config, ("scheduler", *cls.text_parts), text_encoders=True)

    @classmethod
    def _without_transformer(cls, config: ModelConfig, parts: tuple[str, ...], text_encoders: bool):
        """An adapter of `parts` of the folder, its transformer a weightless meta-device module
        of the checkpoint's architecture (the latent layout and the adapter's checks read its
        config; nothing runs it)."""
        config = dataclasses.replace(
            config, load_text_encoders=text_encoders, gradient_checkpointing=False, lora=LoraConfig()
        )
        if config.init == "random":
            # the released transformer on the meta device (FLUX.1-dev: no 24 GB of random
            # weights in an embedding actor); its tiny parts are built on the CPU regardless
            with torch.device("meta"):
                return cls(config)
        folder = resolve_folder(cls.teacher_folder(config), (*parts, "transformer"))
        components = load_components(folder, parts, torch_dtype(config.dtype))
        with torch.device("meta"):
            components["transformer"] = cls.transformer_class.from_config(
                read_part_config(folder, "transformer")
            )
        return cls(dataclasses.replace(config, path=str(folder)), components=components)

    @property
    def loaded_parts(self) -> tuple[str, ...]:
        """Pipeline folder parts a run loads (the folder's other parts are never read); without
        `model.load_text_encoders` the tokenizers only (training from an embedding cache)."""
        return ("transformer", "scheduler", "vae", *self.text_parts_to_load)

    @property
    def text_parts_to_load(self) -> tuple[str, ...]:
        if self.config.load_text_encoders:
            return tuple(self.text_parts)
        return tuple(p for p in self.text_parts if not p.startswith("text_encoder"))

    # --- hooks for the families -------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """{name: (B, ...) tensor} prompt embeddings for a batch, as the velocity consumes them."""
        raise NotImplementedError

    def encode_null(self) -> dict[str, torch.Tensor]:
        """The unconditional condition (batch 1): the empty prompt, as the pipelines' default
        negative prompt "" (SANA overrides: its pipeline encodes negatives differently)."""
        return self.encode_text([""])

    def velocity_model(self, transformer: nn.Module, role: str) -> TransformerVelocity:
        """The FlowModel of `role` around `transformer` (override for role-specific behaviour)."""
        return self.velocity_class(transformer)

    def pack_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) VAE latents -> the velocity's layout (identity; FLUX packs 2x2 patches)."""
        return latents

    def unpack_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `pack_latents`."""
        return x

    @classmethod
    def latent_patch(cls, transformer_config: Mapping[str, Any]) -> int:
        """Latent pixels per side of one token: the transformer's patch size (FLUX: its packing)."""
        return transformer_config.get("patch_size") or 1

    # --- sizing without weights (sid_ray.models.architecture, jobs/plan.py) --------------------
    #: pixels per latent pixel of the family's VAE, known before any VAE is built
    vae_factor: ClassVar[int] = 8
    #: parameters of the released text encoders and VAE ({part: count}, rounded to 1 M): what
    #: every worker holds beside the transformers (the text encoders only without an embedding cache)
    released_part_parameters: ClassVar[dict[str, int]] = {}

    @classmethod
    def released_config_for(cls, name: str) -> dict[str, Any] | None:
        """The released transformer architecture of registered `name`, without building anything."""
        return getattr(cls, "transformer_config", None)

    @classmethod
    def joint_text_tokens(cls, name: str) -> int:
        """Text tokens that join the image tokens in every attention sequence (0: cross-attention)."""
        return 0

    def check_checkpoint(self, transformer_config: Mapping[str, Any], vae_config: Mapping[str, Any]) -> None:
        """Raise ConfigError for settings this checkpoint cannot run (called before loading).

        Empty configs (a folder without them) skip the checks; loading then reports the folder.
        """
        factor = vae_scale_factor_of(vae_config)
        if factor is None or not transformer_config:
            return
        multiple = factor * self.latent_patch(transformer_config)
        if self.config.resolution % multiple:
            # as the stock pipelines' check_inputs: whole tokens, no cropping
            raise ConfigError(
                f"model.resolution: {self.config.name} needs a multiple of {multiple} (VAE factor "
                f"{factor} x latent patch {multiple // factor}), got {self.config.resolution}"
            )

    def released_transformer_config(self) -> dict[str, Any] | None:
        """The released transformer's architecture (`model.init=random` builds it); None if unknown."""
        return None

    def random_parts(self, transformer_config: Mapping[str, Any]) -> dict[str, Any]:
        """Tiny text encoders, tokenizers, VAE and the scheduler whose output widths match
        `transformer_config` (`model.init=random`; see sid_ray.models.random_weights)."""
        raise ConfigError(f"model.init: random weights are not available for {self.config.name}")

    def random_components(self) -> dict[str, Any]:
        """`model.init=random`: the released transformer with random weights, on torch's default
        device in the run's dtype, and the family's tiny parts beside it."""
        transformer_config = self.released_transformer_config()
        if transformer_config is None or self.transformer_class is None:
            raise ConfigError(f"model.init: {self.config.name} has no released architecture to build")
        # first: a family without them fails at once
        parts = tiny_parts(lambda: self.random_parts(transformer_config))
        transformer = random_transformer(self.transformer_class, transformer_config, self.dtype)
        for part in parts.values():
            if isinstance(part, nn.Module):
                part.eval()
                if transformer.device.type != "meta":  # a weightless transformer: parts stay on the CPU
                    part.to(transformer.device)
        kept = set(self.text_parts_to_load)
        parts = {k: v for k, v in parts.items() if k not in self.text_parts or k in kept}
        return {"transformer": transformer, **parts}

    # --- TeacherAdapter ---------------------------------------------------------------------
    @property
    def teacher(self) -> FlowModel:
        return self._teacher

    @property
    def scheduler(self):
        """The folder's scheduler (the samplers use its sigmas; export replaces it)."""
        return self.components["scheduler"]

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel (8 for the SD/FLUX VAEs, 32 for SANA's DC-AE)."""
        return (vae_scale_factor_of(self.vae.config) if self.vae is not None else None) or 8

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
        `model.checkpoint_policy` "frozen" checkpoints only the passes whose weights take no
        gradient (T, and F inside G's update), where recomputing costs a forward but the three
        networks' activations would otherwise be held at once; `model.checkpoint_trained_share`
        of the trained network's blocks, evenly spread, are recomputed as well (memory for speed).
        """
        frozen_only = self.config.checkpoint_policy == "frozen"
        modules = [self.transformer] + [m.transformer for m in models if isinstance(m, TransformerVelocity)]
        modules += [m.base for m in models if isinstance(m, LoraView)]
        for module in {id(m): m for m in modules}.values():
            # the trained network's blocks recomputed all the same (frozen policy, memory for speed)
            share = self.config.checkpoint_trained_share
            recomputed = frozenset(map(id, evenly_spread(repeated_blocks(module), share)))
            if not enabled:
                module.disable_gradient_checkpointing()
            elif self.shared_base is not None and module is self.transformer:
                self.shared_base.checkpoint_frozen_only = frozen_only
                self.shared_base.trained_blocks_recomputed = recomputed
                module.enable_gradient_checkpointing(self.shared_base.checkpoint_function)
            elif frozen_only:
                module.enable_gradient_checkpointing(checkpoint_unless_trained(recomputed))
            else:
                module.enable_gradient_checkpointing()

    def text_pipeline(self):
        """The family's stock pipeline holding only its tokenizers and text encoders.

        Prompt encoding is the pipeline's own `encode_prompt`, so CLIP skip, padding, pooling,
        instruction prefixes and concatenation order are diffusers' by construction, not copies.
        """
        if self._text_pipeline is None:
            text = {part: self.components[part] for part in self.text_parts}
            self._text_pipeline = self.pipeline_class(transformer=None, scheduler=None, vae=None, **text)
        return self._text_pipeline

    @property
    def text_device(self) -> torch.device:
        """Where prompts are tokenised to: the (first) text encoder's device."""
        return self.components["text_encoder"].device

    def encode_prompts(self, prompts: list[str]) -> TensorConditioning:
        """Embeddings of `prompts`, with the null condition (computed once) as their twin."""
        if not self.config.load_text_encoders:
            raise RuntimeError(
                f"{self.config.name}: built without text encoders (model.load_text_encoders=false); "
                "its prompts come encoded from data.embedding_cache"
            )
        if self._null is None:
            self._null = self.encode_null()
        return TensorConditioning(self.encode_text(list(prompts)), self._null)

    def _require_vae(self) -> nn.Module:
        if self.vae is None:
            raise RuntimeError(f"{self.config.name}: this adapter was built without a 'vae' component")
        return self.vae

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the velocity's layout -> images in [0, 1], (B, 3, H, W)."""
        vae = self._require_vae()
        cfg = vae.config
        z = self.unpack_latents(latents).to(vae.dtype)
        z = z / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
        images = vae.decode(z, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents (the posterior's mode for KL VAEs), in the velocity's layout."""
        vae = self._require_vae()
        cfg = vae.config
        out = vae.encode((images * 2 - 1).to(vae.dtype))
        # AutoencoderKL returns a distribution (its mode is deterministic); AutoencoderDC a latent
        z = out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latent
        z = (z - (getattr(cfg, "shift_factor", None) or 0.0)) * cfg.scaling_factor
        return self.pack_latents(z)

    # --- export -------------------------------------------------------------------------------
    def generator_weights(self, generator: FlowModel) -> tuple[nn.Module, str | None]:
        """(the module holding G's weights, the LoRA adapter to merge or None for a full copy).

        In lora mode the module is G's own copy, in shared_base mode the shared base (whose other
        adapter is F's): never the teacher's module, which a Ray worker holds ZeRO-3 partitioned.
        """
        if isinstance(generator, LoraView):
            return generator.base, generator.adapter
        if isinstance(generator, TransformerVelocity):
            return generator.transformer, None
        raise TypeError(f"cannot export a {type(generator).__name__}; expected an F/G copy of this adapter")

    def export_transformer(self, generator: FlowModel, gather: Gather = no_gather) -> StreamedTransformer:
        """G as a transformer of the teacher's class, streamed from G's tensors in memory (LoRA
        merged layer by layer): no copy of the transformer, no second module. Families override
        where G's saved form differs from the teacher's (FLUX folds its guidance embedding)."""
        module, adapter = self.generator_weights(generator)
        return StreamedTransformer(
            type(self.transformer).__name__,
            dict(self.transformer.config),
            merged_state_tensors(module, adapter, gather),
        )

    def export(
        self,
        generator: FlowModel,
        folder: str | Path,
        num_steps: int,
        gather: Gather = no_gather,
        write: bool = True,
        time_shift: float = 1.0,
    ) -> Path:
        """A stock pipeline folder sampling G's K-step roll-out (see `sid_ray.models.export`).

        A ZeRO-3 partitioned G is exported by all ranks together (sid_ray.train.checkpoint):
        `gather` gathers its parameters, and the ranks with `write=False` only take part in the
        gathers (they iterate the same stream and write nothing). `time_shift` is the roll-out
        times' shift G was trained with (`sid.rollout_time_shift`).
        """
        transformer = self.export_transformer(generator, gather)
        if not write:
            for _ in transformer.tensors:
                pass
            return Path(folder)
        return write_pipeline_folder(
            self.pipeline_class,
            {k: v for k, v in self.export_components().items() if k != "transformer"},
            transformer,
            folder,
            num_steps,
            teacher=self.config.name,
            call_arguments=self.export_call_arguments(),
            step_noise_source=self.step_noise_source,
            time_shift=time_shift,
        )

    def export_call_arguments(self) -> dict[str, Any]:
        """What a stock pipeline call needs to sample as G was trained, from this adapter's own
        values: the run's resolution (the pipelines default to the released one) and the text
        length (FluxPipeline pads to 512 T5 tokens; the digits teacher's tokenizer stops at 24,
        and padded prompts all drew the same digit), plus the family's extras."""
        size = self.config.resolution
        return {
            "height": size,
            "width": size,
            "max_sequence_length": self.text_max_length,
            **self.export_call_extras,
        }

    def export_components(self) -> dict[str, Any]:
        """The components a pipeline folder needs: the loaded ones, plus the text encoders that a
        run from an embedding cache did not load, loaded now on the CPU (only the writing rank
        exports, once, at the end of the run)."""
        missing = [p for p in self.text_parts if p not in self.components]
        if not missing:
            return self.components
        if self.config.init == "random":
            extra = tiny_parts(lambda: self.random_parts(self.released_transformer_config()))
        else:
            folder = resolve_folder(self.config.path or self.default_path, missing)
            extra = load_components(folder, missing, self.dtype)
        return {**self.components, **{p: extra[p] for p in missing}}

    def export_lora(self, generator: FlowModel, folder: str | Path) -> Path:
        """G's LoRA weights as diffusers safetensors (`pipe.load_lora_weights(folder)` on the teacher)."""
        if not isinstance(generator, LoraView):
            raise TypeError("export_lora needs a LoRA generator (model.lora.mode lora or shared_base)")
        return export_lora(generator, folder, self.pipeline_class, self.config.lora)

    def to(self, device: torch.device | str) -> DiTAdapter:
        """Move every loaded module (create F and G copies after this, or move them too)."""
        for obj in self.components.values():
            # a weightless meta module (`image_encoder`'s transformer) has nothing to move
            if isinstance(obj, nn.Module) and not any(p.is_meta for p in obj.parameters()):
                obj.to(device)
        return self


class VariantDiTAdapter(DiTAdapter):
    """A family whose registered names differ only in data: one class, one `Variant` per name."""

    #: registered name -> variant (set by the family)
    variants: ClassVar[dict[str, Variant]] = {}

    def __init__(
        self,
        config: ModelConfig,
        variant: Variant | None = None,
        components: dict[str, Any] | None = None,
        sid: SiDConfig | None = None,
    ):
        self.variant = variant or self.variant_of(config.name)
        # instance attributes over the class defaults: this variant's registered name and folder
        self.name = self.variant.name
        self.default_path = self.variant.default_path
        super().__init__(config, components, sid)

    @property
    def text_max_length(self) -> int:
        return self.variant.max_sequence_length

    def released_transformer_config(self) -> dict[str, Any] | None:
        return self.variant.transformer_config

    @classmethod
    def released_config_for(cls, name: str) -> dict[str, Any] | None:
        return cls.variant_of(name).transformer_config

    @classmethod
    def variant_of(cls, name: str) -> Variant:
        if name not in cls.variants:
            raise ConfigError(
                f"model.name: {name!r} is not a {cls.__name__} teacher; use one of {list(cls.variants)}"
            )
        return cls.variants[name]

    @classmethod
    def register_variants(cls) -> None:
        """Register every variant's name with the registry (called once by the family module)."""
        for name in cls.variants:
            register(name, cls)
