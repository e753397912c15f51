"""A tiny SD3.5: the real MMDiT, three text encoders and VAE, a few thousand parameters each.

The folder it writes is an ordinary `StableDiffusion3Pipeline` folder, so tests load it through
the same code as a downloaded checkpoint. It keeps every structural fact of the family:
- transformer: `SD3Transformer2DModel` with SD3.5's QK RMS-norm and one MMDiT-X dual-attention
  layer, 16 latent channels, patch size 2,
- text_encoder / text_encoder_2: `CLIPTextModelWithProjection` of different widths (CLIP-L and
  CLIP-G differ too), so the order of their concatenation is checked,
- text_encoder_3: a T5 v1.1 encoder wider than the two CLIP widths together, so the pipeline's
  zero-padding of the CLIP embeddings to the T5 width is exercised,
- vae: an `AutoencoderKL` with four stages (8x), 16 latent channels and SD3's scaling and shift
  factors,
- scheduler: `FlowMatchEulerDiscreteScheduler` with SD3's shift 3.
Tokenizers and text encoders come from `sid_ray.models.tiny.common` (built offline).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)

from sid_ray.models.tiny.common import (
    clip_tokenizer,
    t5_tokenizer,
    tiny_clip_text_model,
    tiny_kl_vae,
    tiny_t5_encoder,
)

CLIP_L_WIDTH = 16  # hidden size = projection size, as CLIP-L's 768
CLIP_G_WIDTH = 24  # as CLIP-G's 1280
T5_WIDTH = 48  # > CLIP_L_WIDTH + CLIP_G_WIDTH, as T5-XXL's 4096 > 768 + 1280
T5_MAX_LENGTH = 256  # StableDiffusion3Pipeline pads T5 input to its max_sequence_length, 256
LATENT_CHANNELS = 16
SD3_VAE_SCALING_FACTOR = 1.5305  # the released SD3 / SD3.5 VAE's values, kept in the tiny one
SD3_VAE_SHIFT_FACTOR = 0.0609
SD3_FLOW_SHIFT = 3.0


TINY_SD3_TRANSFORMER_CONFIG = {
    "sample_size": 8,
    "patch_size": 2,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": T5_WIDTH,
    "caption_projection_dim": 16,  # = heads * head_dim, as in every released config
    "pooled_projection_dim": CLIP_L_WIDTH + CLIP_G_WIDTH,
    "pos_embed_max_size": 16,
    "dual_attention_layers": (0,),
    "qk_norm": "rms_norm",
}


def build_transformer() -> SD3Transformer2DModel:
    return SD3Transformer2DModel(**TINY_SD3_TRANSFORMER_CONFIG).eval()


def build_vae() -> AutoencoderKL:
    return tiny_kl_vae(LATENT_CHANNELS, SD3_VAE_SCALING_FACTOR, SD3_VAE_SHIFT_FACTOR)  # 4 stages: 8x


def build_tiny_sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """All parts with seeded random weights, fp32."""
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()
    tokenizer_3 = t5_tokenizer(model_max_length=T5_MAX_LENGTH)
    text_encoder = tiny_clip_text_model(
        vocab_size=len(tokenizer),
        hidden_size=CLIP_L_WIDTH,
        projection_dim=CLIP_L_WIDTH,
        num_attention_heads=2,
        intermediate_size=32,
        with_projection=True,
        seed=seed,
    )
    text_encoder_2 = tiny_clip_text_model(
        vocab_size=len(tokenizer_2),
        hidden_size=CLIP_G_WIDTH,
        projection_dim=CLIP_G_WIDTH,
        num_attention_heads=2,
        intermediate_size=48,
        with_projection=True,
        seed=seed + 1,
    )
    text_encoder_3 = tiny_t5_encoder(vocab_size=len(tokenizer_3), d_model=T5_WIDTH, d_ff=64, seed=seed + 2)
    torch.manual_seed(seed + 3)
    return StableDiffusion3Pipeline(
        transformer=build_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SD3_FLOW_SHIFT),
        vae=build_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def write_tiny_sd3(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusion3Pipeline folder (safetensors) and return its path."""
    folder = Path(folder)
    build_tiny_sd3_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder
