"""FLUX.1 teachers ("flux-dev", "flux-tiny"): every FLUX-specific fact lives here.

- Latents: the VAE's (B, 16, H/8, W/8) latents are packed into 2x2 patches, (B, H/16 * W/16, 64),
  with position ids img_ids (row, column) and zero txt_ids, exactly as diffusers' FluxPipeline
  (its own static `_pack_latents` / `_unpack_latents` / `_prepare_latent_image_ids` are called).
- Time: the transformer takes t in [0, 1] and multiplies by 1000 inside (SID.md 1).
- Guidance (SID.md 5): FLUX.1-dev is guidance-distilled, so `guided_velocity(..., k)` is ONE pass
  with guidance embedding k ("embedding" mode, the default for every role; the generator runs at
  `generator_guidance`, 1). "cfg" mode runs real two-pass CFG on top, at a fixed embedding.
- Prompts: CLIP-L pooled output + T5-XXL hidden states, encoded by FluxPipeline.encode_prompt.
- VAE: z_model = (z_vae - shift_factor) * scaling_factor.
- Export: the guidance embedding of G's value is folded into the timestep embedding's bias, so the
  exported transformer has no guidance input and stock FluxPipeline samples G whatever
  `guidance_scale` the user passes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from torch import nn

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.dit import DiTAdapter, TransformerVelocity
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

    mode: Literal["embedding", "cfg"] = "embedding"
    #: "embedding": k is the guidance embedding (one pass); "cfg": the embedding value held fixed
    #: while k is real two-pass CFG (the empty prompt as the unconditional branch)
    embedding: float = 1.0


@dataclass(frozen=True)
class FluxRoles:
    teacher: FluxGuidance = field(default_factory=FluxGuidance)
    fake: FluxGuidance = field(default_factory=FluxGuidance)
    generator: FluxGuidance = field(default_factory=FluxGuidance)


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
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    default_lora_targets = FLUX_LORA_TARGETS
    default_path = "black-forest-labs/FLUX.1-dev"
    pipeline_class = FluxPipeline
    transformer_config: ClassVar[dict[str, Any]] = FLUX_DEV_TRANSFORMER_CONFIG

    def __init__(
        self,
        config: ModelConfig,
        components: dict[str, Any] | None = None,
        roles: FluxRoles | None = None,
        generator_guidance: float = 1.0,
        max_sequence_length: int = 512,
    ):
        self.roles = roles or FluxRoles()
        self.generator_guidance = generator_guidance  # the embedding G was trained with (export)
        super().__init__(config, components)
        if config.resolution % (self.vae_scale_factor * 2):
            raise ConfigError(
                f"model.resolution: FLUX needs a multiple of {self.vae_scale_factor * 2}, got {config.resolution}"
            )
        # the pipeline's default 512, capped by the tokenizer (tiny tokenizers are shorter)
        self.max_sequence_length = min(max_sequence_length, self.components["tokenizer_2"].model_max_length)
        self._text_pipeline = FluxPipeline(
            scheduler=None,
            vae=None,
            transformer=None,
            **{k: self.components[k] for k in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")},
        )

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
        scheduler = self.components["scheduler"]
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
        prompt_embeds, pooled, _ = self._text_pipeline.encode_prompt(
            prompts, device=self.device, max_sequence_length=self.max_sequence_length
        )
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    def pack_latents(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, h, w = latents.shape
        return FluxPipeline._pack_latents(latents, b, c, h, w)

    def unpack_latents(self, x: torch.Tensor) -> torch.Tensor:
        res = self.config.resolution
        return FluxPipeline._unpack_latents(x, res, res, self.vae_scale_factor)

    def export_transformer(self, generator) -> nn.Module:
        return fold_guidance_embedding(super().export_transformer(generator), self.generator_guidance)


def fold_guidance_embedding(transformer: FluxTransformer2DModel, value: float) -> FluxTransformer2DModel:
    """The same network at a fixed guidance embedding `value`, without a guidance input.

    FLUX adds guidance_embedder(g) to the timestep embedding (CombinedTimestepGuidanceTextProj-
    Embeddings); at fixed g that is a constant vector, folded here into the bias of the timestep
    embedder's last layer. The new model shares every other tensor with `transformer`.
    """
    if not transformer.config.guidance_embeds:
        return transformer
    embed = transformer.time_text_embed
    param = next(transformer.parameters())
    with torch.no_grad():
        g = torch.full((1,), float(value), device=param.device, dtype=param.dtype) * 1000
        constant = embed.guidance_embedder(embed.time_proj(g).to(param.dtype))[0]
        state = {k: v for k, v in transformer.state_dict().items() if ".guidance_embedder." not in f".{k}"}
        bias_key = "time_text_embed.timestep_embedder.linear_2.bias"
        state[bias_key] = state[bias_key] + constant
    with torch.device("meta"):
        folded = FluxTransformer2DModel.from_config({**transformer.config, "guidance_embeds": False})
    folded.load_state_dict(state, strict=True, assign=True)
    return folded.eval().requires_grad_(False)


class TinyFluxAdapter(FluxAdapter):
    """A tiny FLUX (real classes, tiny configs) for CPU tests; builds its folder if model.path is empty."""

    name = "flux-tiny"
    default_path = ""

    def __init__(self, config: ModelConfig, components: dict[str, Any] | None = None, **kwargs):
        if components is None and not config.path:
            from sid_ray.models.tiny.flux import build_tiny_flux

            config.path = str(build_tiny_flux(tempfile.mkdtemp(prefix="sid-flux-tiny-")))
        super().__init__(config, components, **kwargs)


register("flux-dev", FluxAdapter)
register("flux-tiny", TinyFluxAdapter)
