"""Stable Diffusion 3 / 3.5 teachers: "sd35-large", "sd35-medium", "sd3-medium", "sd3-tiny".

The family's facts, all here (shared/SID.md 1, 5):
- `SD3Transformer2DModel` takes the timestep as 1000 * t (StableDiffusion3Pipeline passes the
  scheduler's timesteps, sigma * 1000, unchanged), and predicts the velocity eps - x0.
- Three text encoders, exactly as `StableDiffusion3Pipeline.encode_prompt` combines them (we call
  it): CLIP-L and CLIP-G penultimate hidden states concatenated along features and zero-padded to
  the T5 width, then T5 tokens appended along the sequence -> `prompt_embeds` (B, 77 + 256, 4096);
  the two CLIP pooled (projected) outputs concatenated -> `pooled_prompt_embeds` (B, 2048).
- Guidance is two-pass CFG with the empty prompt's embeddings as the unconditional condition
  (the pipeline's default negative prompt is "").
- VAE: `AutoencoderKL` with 16 latent channels, 8x compression; latents = (z - shift) * scale
  (scaling_factor 1.5305, shift_factor 0.0609 in the released VAE; read from its config).
- Latent shape (16, H / 8, W / 8), unpacked (the transformer patchifies internally).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

from sid_ray.models.dit import TransformerVelocity, Variant, VariantDiTAdapter, fp32_timestep
from sid_ray.models.tiny.sd3 import TINY_SD3_TRANSFORMER_CONFIG
from sid_ray.sid.guidance import Conditioning

#: SD3Transformer2DModel's timestep for flow time t (t = 1 pure noise)
TIMESTEP_SCALE = 1000.0

#: StableDiffusion3Pipeline's default T5 sequence length (`max_sequence_length`)
DEFAULT_T5_LENGTH = 256

# The released transformers' `transformer/config.json` (diffusers SD3Transformer2DModel kwargs),
# kept here so benchmarks can build a random-weight model of the real size without a download.
SD35_LARGE_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
    "qk_norm": "rms_norm",
}
SD35_MEDIUM_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "qk_norm": "rms_norm",
    # MMDiT-X: the first 13 blocks also self-attend over the image tokens
    "dual_attention_layers": tuple(range(13)),
}
SD3_MEDIUM_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
}


@dataclass(frozen=True)
class SD3Variant(Variant):
    """One registered SD3-family teacher."""

    #: T5 tokens per prompt, as the pipeline's `max_sequence_length`
    max_sequence_length: int = DEFAULT_T5_LENGTH


VARIANTS: dict[str, SD3Variant] = {
    v.name: v
    for v in (
        SD3Variant("sd35-large", "stabilityai/stable-diffusion-3.5-large", SD35_LARGE_TRANSFORMER),
        SD3Variant("sd35-medium", "stabilityai/stable-diffusion-3.5-medium", SD35_MEDIUM_TRANSFORMER),
        SD3Variant("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", SD3_MEDIUM_TRANSFORMER),
        # built by sid_ray.models.tiny.sd3.write_tiny_sd3; model.path must point at it (or init=random)
        SD3Variant("sd3-tiny", "", TINY_SD3_TRANSFORMER_CONFIG),
    )
}

# CLIP-L's width (hidden = projection) in every SD3 release; CLIP-G's is the pooled rest
CLIP_L_WIDTH = 768
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")


def sd3_timestep(t: torch.Tensor, batch: int) -> torch.Tensor:
    """The transformer's timestep for flow time t: (B,) float32 1000 * t (see `fp32_timestep`)."""
    return fp32_timestep(t, batch, TIMESTEP_SCALE)


class SD3Velocity(TransformerVelocity):
    """v(x_t, t, cond) from one SD3Transformer2DModel forward; cond holds `prompt_embeds`
    (B, L, joint_attention_dim) and `pooled_prompt_embeds` (B, pooled_projection_dim)."""

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        tensors = cond.tensors
        v = self.transformer(
            hidden_states=x_t.to(self.dtype),
            timestep=sd3_timestep(t, x_t.shape[0]).to(x_t.device),
            encoder_hidden_states=tensors["prompt_embeds"].to(self.dtype),
            pooled_projections=tensors["pooled_prompt_embeds"].to(self.dtype),
            return_dict=False,
        )[0]
        return v.to(x_t.dtype)


class SD3Adapter(VariantDiTAdapter):
    """SD3 / SD3.5 teacher; see the module docstring for the family's facts."""

    family: ClassVar[str] = "sd3"
    variants: ClassVar[dict[str, SD3Variant]] = VARIANTS
    text_parts: ClassVar[tuple[str, ...]] = TEXT_PARTS
    velocity_class: ClassVar[type[TransformerVelocity]] = SD3Velocity
    pipeline_class: ClassVar[type] = StableDiffusion3Pipeline
    transformer_class: ClassVar[type] = SD3Transformer2DModel
    # CLIP ViT-L/14 and OpenCLIP bigG/14 text with projections, T5 v1.1 XXL encoder, the 16-channel
    # AutoencoderKL (every SD3 / SD3.5 release; the tiny test model's parts are counted as nothing)
    released_part_parameters: ClassVar[dict[str, int]] = {
        "text_encoder": 124_000_000,
        "text_encoder_2": 695_000_000,
        "text_encoder_3": 4_762_000_000,
        "vae": 84_000_000,
    }
    # the generator runs without CFG (SID.md 5); the pipeline's default guidance_scale is 7
    export_call_extras: ClassVar[dict[str, Any]] = {"guidance_scale": 1.0}

    @classmethod
    def joint_text_tokens(cls, name: str) -> int:
        return 77 + cls.variant_of(name).max_sequence_length  # CLIP tokens, then T5's (joint attention)

    # joint attention: the image stream's projections and the text stream's (add_*, to_add_out)
    default_lora_targets: ClassVar[tuple[str, ...]] = (
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
    )

    def random_parts(self, transformer_config: Mapping[str, Any]) -> dict[str, Any]:
        """CLIP-L 768 and CLIP-G pooled - 768 wide (1280 in every release), T5 as wide as the
        joint attention, the 16-channel 8x VAE with SD3's normalisation and SD3's scheduler."""
        from sid_ray.models.tiny.common import (
            clip_tokenizer,
            t5_tokenizer,
            tiny_clip_text_model,
            tiny_kl_vae,
            tiny_t5_encoder,
        )
        from sid_ray.models.tiny.sd3 import SD3_FLOW_SHIFT, SD3_VAE_SCALING_FACTOR, SD3_VAE_SHIFT_FACTOR

        pooled = transformer_config["pooled_projection_dim"]
        clip_l = CLIP_L_WIDTH if pooled > CLIP_L_WIDTH else pooled // 2  # a tiny model: half each
        clip_g = pooled - clip_l
        tokenizer_3 = t5_tokenizer(model_max_length=self.variant.max_sequence_length)

        def clip(width: int):
            return tiny_clip_text_model(
                hidden_size=width, projection_dim=width, num_hidden_layers=1, with_projection=True
            )

        return {
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=SD3_FLOW_SHIFT),
            "vae": tiny_kl_vae(
                transformer_config["in_channels"], SD3_VAE_SCALING_FACTOR, SD3_VAE_SHIFT_FACTOR
            ),
            "text_encoder": clip(clip_l),
            "tokenizer": clip_tokenizer(),
            "text_encoder_2": clip(clip_g),
            "tokenizer_2": clip_tokenizer(),
            "text_encoder_3": tiny_t5_encoder(
                vocab_size=len(tokenizer_3),
                d_model=transformer_config["joint_attention_dim"],
                num_layers=1,
                d_kv=64,
            ),
            "tokenizer_3": tokenizer_3,
        }

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        prompt_embeds, _, pooled, _ = self.text_pipeline().encode_prompt(
            prompt=prompts,
            prompt_2=None,  # None: every encoder sees `prompt`, as in the pipeline's default call
            prompt_3=None,
            device=self.text_device,
            do_classifier_free_guidance=False,  # the null condition is encoded once, separately
            max_sequence_length=self.variant.max_sequence_length,
        )
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}


SD3Adapter.register_variants()
