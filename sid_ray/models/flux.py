"""FLUX.1 teachers ("flux-dev", "flux-tiny"): every FLUX-specific fact lives here.

- Latents: the VAE's (B, 16, H/8, W/8) latents are packed into 2x2 patches, (B, H/16 * W/16, 64),
  with position ids img_ids (row, column) and zero txt_ids, exactly as diffusers' FluxPipeline
  (its own static `_pack_latents` / `_unpack_latents` / `_prepare_latent_image_ids` are called).
- Time: the transformer takes t in [0, 1] and multiplies by 1000 inside (SID.md 1).
- Guidance (SID.md 5): FLUX.1-dev is guidance-distilled, so `guided_velocity(..., k)` is ONE pass
  with guidance embedding k ("embedding" mode, the default of T and F). "cfg" mode runs real
  two-pass CFG on top, at a fixed embedding (`model.flux_guidance`); Zero-CFG and Anti-CFG on F
  need it, since the embedding has no unconditional or negative setting (`check_guidance_modes`).
  The generator runs in embedding mode at `sid.generator_guidance` (1 = no guidance).
- Prompts: CLIP-L pooled output + T5-XXL hidden states, encoded by FluxPipeline.encode_prompt.
- VAE: z_model = (z_vae - shift_factor) * scaling_factor.
- Export: G's guidance embedding (`sid.generator_guidance`) is folded into the timestep
  embedding's bias, so the exported transformer has no guidance input and stock FluxPipeline
  samples G whatever `guidance_scale` the user passes.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from torch import nn

from sid_ray.config.schema import ConfigError, FluxGuidanceConfig, ModelConfig, SiDConfig
from sid_ray.models.base import FlowModel
from sid_ray.models.dit import DiTAdapter, TransformerVelocity
from sid_ray.models.export import Gather, StreamedTransformer, no_gather
from sid_ray.models.lora import merged_state_tensors
from sid_ray.models.registry import register
from sid_ray.models.sampling import scheduler_schedule
from sid_ray.sid.guidance import Conditioning, classifier_free_guidance

# black-forest-labs/FLUX.1-dev transformer/config.json (11.9 B parameters)
FLUX_DEV_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": [16, 56, 56],
}
# the released VAE's latent normalisation
FLUX_VAE_SCALING_FACTOR, FLUX_VAE_SHIFT_FACTOR = 0.3611, 0.1159
# LoRA targets: attention and MLP projections of the double- and single-stream blocks
FLUX_LORA_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
    "proj_mlp", "proj_out",
)  # fmt: skip


@dataclass(frozen=True)
class FluxGuidance:
    """How one role turns a guidance scale k into FLUX forwards (SID.md 5)."""

    #: "embedding": `guided_velocity(..., k)` is one pass at guidance embedding k; "cfg": real
    #: two-pass CFG at scale k (the empty prompt as the unconditional branch)
    mode: Literal["embedding", "cfg"] = "embedding"
    #: the embedding of an unguided `velocity` pass, so of both passes in "cfg" mode
    embedding: float = 1.0


@dataclass(frozen=True)
class FluxRoles:
    """The guidance behaviour of T, F and G."""

    teacher: FluxGuidance = field(default_factory=FluxGuidance)
    fake: FluxGuidance = field(default_factory=FluxGuidance)
    generator: FluxGuidance = field(default_factory=FluxGuidance)

    @classmethod
    def from_config(cls, guidance: FluxGuidanceConfig, generator_guidance: float) -> FluxRoles:
        return cls(
            teacher=FluxGuidance(guidance.teacher, guidance.cfg_embedding),
            fake=FluxGuidance(guidance.fake, guidance.cfg_embedding),
            # G runs without CFG (SID.md 5), at the embedding training gives it and export folds in
            generator=FluxGuidance("embedding", generator_guidance),
        )


def check_guidance_modes(guidance: FluxGuidanceConfig, sid: SiDConfig) -> None:
    """Raise ConfigError where a role in "embedding" mode gets a scale k <= 0.

    FLUX.1-dev's guidance embedding is one conditional pass at strength k; it has no unconditional
    (k = 0, Zero-CFG) or negative (Anti-CFG) setting, which only real two-pass CFG expresses.
    """
    scales = {
        "teacher": {"teacher_guidance": sid.teacher_guidance},
        "fake": {
            "fake_guidance_train": sid.fake_guidance_train,
            "fake_guidance_eval": sid.fake_guidance_eval,
        },
    }
    for role, role_scales in scales.items():
        bad = [f"sid.{name}={k:g}" for name, k in role_scales.items() if k <= 0]
        if bad and getattr(guidance, role) == "embedding":
            raise ConfigError(
                f"model.flux_guidance.{role}: 'embedding' mode feeds the guidance scale to FLUX's "
                f"guidance embedding, which has no unconditional or negative setting, but "
                f"{', '.join(bad)} (Zero-CFG / Anti-CFG); set model.flux_guidance.{role}=cfg "
                "for real two-pass CFG"
            )


class FluxVelocity(TransformerVelocity):
    """v(x_t, t, cond) of a FluxTransformer2DModel; x_t packed (B, h/2 * w/2, 4C), t in (0, 1)."""

    def __init__(self, transformer: nn.Module, latent_grid: tuple[int, int], guidance: FluxGuidance):
        super().__init__(transformer)
        self.latent_grid = latent_grid  # unpacked latent (h, w)
        self.guidance = guidance

    def forward_once(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, embedding: float
    ) -> torch.Tensor:
        tensors = cond.tensors
        prompt_embeds = tensors["prompt_embeds"].to(x_t.dtype)  # (B, L, joint_attention_dim)
        batch, dtype, device = x_t.shape[0], x_t.dtype, x_t.device
        h, w = self.latent_grid
        img_ids = FluxPipeline._prepare_latent_image_ids(batch, h // 2, w // 2, device, dtype)
        txt_ids = torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((batch,), float(embedding), device=device, dtype=torch.float32)
        return self.transformer(
            hidden_states=x_t,
            timestep=t.to(dtype),  # FLUX takes t in [0, 1] (it multiplies by 1000 inside)
            guidance=guidance,
            pooled_projections=tensors["pooled_prompt_embeds"].to(dtype),
            encoder_hidden_states=prompt_embeds,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.forward_once(x_t, t, cond, self.guidance.embedding)

    def guided_velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> torch.Tensor:
        if self.guidance.mode == "embedding" and self.transformer.config.guidance_embeds:
            return self.forward_once(x_t, t, cond, scale)  # SID.md 5: k -> embedding, one pass
        return classifier_free_guidance(self.velocity, x_t, t, cond, scale)


class FluxAdapter(DiTAdapter):
    """FLUX.1 teacher. Velocity layout: packed latents (H/16 * W/16, 64) for FLUX.1-dev."""

    name = "flux-dev"
    family = "flux"
    text_parts = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    default_lora_targets = FLUX_LORA_TARGETS
    default_path = "black-forest-labs/FLUX.1-dev"
    pipeline_class = FluxPipeline
    transformer_class = FluxTransformer2DModel
    transformer_config: ClassVar[dict[str, Any]] = FLUX_DEV_TRANSFORMER_CONFIG
    # CLIP ViT-L/14 text, T5 v1.1 XXL encoder, the 16-channel AutoencoderKL
    released_part_parameters: ClassVar[dict[str, int]] = {
        "text_encoder": 123_000_000,
        "text_encoder_2": 4_762_000_000,
        "vae": 84_000_000,
    }

    def __init__(
        self,
        config: ModelConfig,
        components: dict[str, Any] | None = None,
        sid: SiDConfig | None = None,
        max_sequence_length: int = 512,
    ):
        # export folds G's embedding from here: without the run's SiD section it is a default
        self.sid_given = sid is not None
        sid = sid or SiDConfig()
        # read by velocity_model, which the base constructor calls to wrap the teacher
        self.roles = FluxRoles.from_config(config.flux_guidance, sid.generator_guidance)
        super().__init__(config, components, sid)
        # the pipeline's default 512, capped by the tokenizer (tiny tokenizers are shorter)
        self.max_sequence_length = min(max_sequence_length, self.components["tokenizer_2"].model_max_length)

    @property
    def text_max_length(self) -> int:
        return self.max_sequence_length

    def released_transformer_config(self) -> dict[str, Any]:
        return self.transformer_config

    def random_parts(self, transformer_config: Mapping[str, Any]) -> dict[str, Any]:
        """CLIP as wide as the pooled projection, T5 as wide as the joint attention, 512 T5 tokens
        (FluxPipeline's default), a 16-channel 8x VAE for the 64 = 16 x 2 x 2 packed channels."""
        from sid_ray.models.tiny.common import (
            clip_tokenizer,
            t5_tokenizer,
            tiny_clip_text_model,
            tiny_kl_vae,
            tiny_t5_encoder,
        )
        from sid_ray.models.tiny.flux import FLUX_SCHEDULER_CONFIG

        tokenizer_2 = t5_tokenizer(model_max_length=512)
        clip_width, t5_width = (
            transformer_config["pooled_projection_dim"],
            transformer_config["joint_attention_dim"],
        )
        return {
            "scheduler": FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG),
            "vae": tiny_kl_vae(
                transformer_config["in_channels"] // 4, FLUX_VAE_SCALING_FACTOR, FLUX_VAE_SHIFT_FACTOR
            ),
            "text_encoder": tiny_clip_text_model(
                hidden_size=clip_width, projection_dim=clip_width, num_hidden_layers=1
            ),
            "tokenizer": clip_tokenizer(),
            "text_encoder_2": tiny_t5_encoder(
                vocab_size=len(tokenizer_2), d_model=t5_width, num_layers=1, d_kv=64
            ),
            "tokenizer_2": tokenizer_2,
        }

    @property
    def generator_guidance(self) -> float:
        """The guidance embedding G runs at (`sid.generator_guidance`), folded in by export."""
        return self.roles.generator.embedding

    @classmethod
    def latent_patch(cls, transformer_config: Mapping[str, Any]) -> int:
        return 2  # FluxPipeline packs 2x2 latent pixels into one token (the transformer's patch is 1)

    @classmethod
    def joint_text_tokens(cls, name: str) -> int:
        return 512  # T5 tokens per prompt (FluxPipeline's max_sequence_length), joint with the image's

    def check_checkpoint(self, transformer_config: Mapping[str, Any], vae_config: Mapping[str, Any]) -> None:
        super().check_checkpoint(transformer_config, vae_config)
        # without a guidance embedding every scale is two-pass CFG already, so every mode is valid
        if transformer_config.get("guidance_embeds"):
            check_guidance_modes(self.config.flux_guidance, self.sid)

    @property
    def latent_grid(self) -> tuple[int, int]:
        # as FluxPipeline.prepare_latents: 2 * (pixels // (vae_scale_factor * 2))
        size = 2 * (self.config.resolution // (self.vae_scale_factor * 2))
        return size, size

    @property
    def latent_shape(self) -> tuple[int, ...]:
        h, w = self.latent_grid
        return ((h // 2) * (w // 2), self.transformer.config.in_channels)

    def pipeline_schedule(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(times, sigmas) FluxPipeline uses for `num_steps` at this resolution (for `euler_sample`).

        As FluxPipeline.__call__: sigmas linspace(1, 1/N, N), shifted by the resolution-dependent
        mu of the folder's scheduler config.
        """
        scheduler = self.scheduler
        cfg = scheduler.config
        mu = calculate_shift(
            self.latent_shape[0],
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
        return scheduler_schedule(scheduler, num_steps, sigmas=sigmas, mu=mu)

    def velocity_model(self, transformer: nn.Module, role: str) -> FluxVelocity:
        return FluxVelocity(transformer, self.latent_grid, getattr(self.roles, role))

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        prompt_embeds, pooled, _ = self.text_pipeline().encode_prompt(
            prompts, device=self.text_device, max_sequence_length=self.max_sequence_length
        )
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    def pack_latents(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, h, w = latents.shape
        return FluxPipeline._pack_latents(latents, b, c, h, w)

    def unpack_latents(self, x: torch.Tensor) -> torch.Tensor:
        res = self.config.resolution
        return FluxPipeline._unpack_latents(x, res, res, self.vae_scale_factor)

    def export_transformer(self, generator: FlowModel, gather: Gather = no_gather) -> StreamedTransformer:
        if not self.sid_given and self.transformer.config.guidance_embeds:
            warnings.warn(
                f"exporting G with guidance embedding {self.generator_guidance:g}, SiDConfig's default: "
                "this adapter was built without the run's SiD section, so sid.generator_guidance was "
                "not read; build it with build_adapter(run_config)",
                stacklevel=2,
            )
        module, adapter = self.generator_weights(generator)
        streamed = super().export_transformer(generator, gather)
        return fold_guidance_embedding(streamed, module, adapter, self.generator_guidance, gather)


GUIDANCE_EMBEDDER = "time_text_embed.guidance_embedder"
TIMESTEP_EMBEDDER_BIAS = "time_text_embed.timestep_embedder.linear_2.bias"


def fold_guidance_embedding(
    streamed: StreamedTransformer,
    transformer: nn.Module,
    adapter: str | None,
    value: float,
    gather: Gather = no_gather,
) -> StreamedTransformer:
    """The same network at a fixed guidance embedding `value`, without a guidance input.

    FLUX adds guidance_embedder(time_proj(1000 g)) to the timestep embedding (CombinedTimestep-
    GuidanceTextProjEmbeddings); at fixed g that is a constant vector. It is computed once, now,
    from `transformer` (the module `streamed` reads, `adapter` merged), then added to the bias of
    the timestep embedder's last layer as the stream passes it; the guidance embedder's tensors
    are dropped and the config says `guidance_embeds: False`.
    """
    if not streamed.config.get("guidance_embeds"):
        return streamed
    constant = guidance_vector(transformer, adapter, value, gather)
    config = {**streamed.config, "guidance_embeds": False}
    return replace(streamed, config=config, tensors=_folded(streamed.tensors, constant))


def _folded(
    tensors: Iterable[tuple[str, torch.Tensor]], constant: torch.Tensor
) -> Iterator[tuple[str, torch.Tensor]]:
    for key, tensor in tensors:
        if key.startswith(f"{GUIDANCE_EMBEDDER}."):
            continue
        yield key, (tensor + constant.to(tensor.device)) if key == TIMESTEP_EMBEDDER_BIAS else tensor


@torch.no_grad()
def guidance_vector(
    transformer: nn.Module, adapter: str | None, value: float, gather: Gather = no_gather
) -> torch.Tensor:
    """guidance_embedder(time_proj(1000 g)) at g = `value`, as FluxTransformer2DModel's forward
    computes it (in the weights' dtype), from the embedder's merged and gathered tensors.

    No module is called through `__call__`: on a ZeRO-3 partitioned G, DeepSpeed's module hooks
    would fetch and release parameters behind the gather (`_hookless` runs the parameter-free
    ones; the two linear layers run on the streamed tensors).
    """
    embed = transformer.time_text_embed
    embedder = embed.guidance_embedder
    weights = {key: tensor.clone() for key, tensor in merged_state_tensors(embedder, adapter, gather)}
    weight_1 = weights["linear_1.weight"]
    g = torch.full((1,), float(value), device=weight_1.device, dtype=weight_1.dtype) * 1000
    hidden = F.linear(_hookless(embed.time_proj, g).to(weight_1.dtype), weight_1, weights["linear_1.bias"])
    hidden = _hookless(embedder.act, hidden)
    return F.linear(hidden, weights["linear_2.weight"], weights["linear_2.bias"])[0]


def _hookless(module: nn.Module, *args):
    """`module`'s own forward, without its hooks (for modules without parameters or children)."""
    return type(module).forward(module, *args)


class TinyFluxAdapter(FluxAdapter):
    """A tiny FLUX (real classes, tiny configs) for CPU tests; builds its folder if model.path is empty."""

    name = "flux-tiny"
    default_path = ""
    released_part_parameters: ClassVar[dict[str, int]] = {}

    def __init__(self, config: ModelConfig, components: dict[str, Any] | None = None, **kwargs):
        if components is None and not config.path and config.init == "pretrained":
            from sid_ray.models.tiny.flux import build_tiny_flux

            config.path = str(build_tiny_flux(tempfile.mkdtemp(prefix="sid-flux-tiny-")))
        super().__init__(config, components, **kwargs)

    def released_transformer_config(self) -> dict[str, Any]:
        from sid_ray.models.tiny.flux import TINY_FLUX_TRANSFORMER_CONFIG

        return TINY_FLUX_TRANSFORMER_CONFIG

    @classmethod
    def released_config_for(cls, name: str) -> dict[str, Any]:
        from sid_ray.models.tiny.flux import TINY_FLUX_TRANSFORMER_CONFIG

        return TINY_FLUX_TRANSFORMER_CONFIG


register("flux-dev", FluxAdapter)
register("flux-tiny", TinyFluxAdapter)
