"""A tiny FLUX.1 pipeline folder: real diffusers/transformers classes, tiny configs, no download.

`build_tiny_flux(folder)` saves FluxPipeline(transformer, vae, CLIP, T5, tokenizers, scheduler)
with `save_pretrained(safe_serialization=True)`, so it loads like the real FLUX.1-dev folder.
Sizes: transformer 1 double + 1 single block, 2 heads of 8; VAE 2 levels (8x8 latents at
16x16 pixels, packed to 16 tokens of 16 channels); text encoders of width 32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from sid_ray.models.tiny.common import clip_tokenizer, t5_tokenizer, tiny_clip_text_model, tiny_t5_encoder

TINY_TEXT_WIDTH = 32
TINY_LATENT_CHANNELS = 4
TINY_FLUX_TRANSFORMER_CONFIG = {
    "patch_size": 1,
    "in_channels": TINY_LATENT_CHANNELS * 4,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": TINY_TEXT_WIDTH,
    "pooled_projection_dim": TINY_TEXT_WIDTH,
    "guidance_embeds": True,
    "axes_dims_rope": [2, 2, 4],
}
# FLUX.1-dev's scheduler config (dynamic, resolution-dependent shift)
FLUX_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


def tiny_flux_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=TINY_LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.3611,  # FLUX's values, so scaling AND shift are exercised
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()


def tiny_flux_transformer(seed: int = 0, guidance_embeds: bool = True) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        **{**TINY_FLUX_TRANSFORMER_CONFIG, "guidance_embeds": guidance_embeds}
    ).eval()


def tiny_flux_pipeline(seed: int = 0, t5_max_length: int = 16) -> FluxPipeline:
    tok_2 = t5_tokenizer(model_max_length=t5_max_length)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG),
        vae=tiny_flux_vae(seed),
        text_encoder=tiny_clip_text_model(hidden_size=TINY_TEXT_WIDTH, seed=seed + 1),
        tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_t5_encoder(vocab_size=len(tok_2), d_model=TINY_TEXT_WIDTH, seed=seed + 2),
        tokenizer_2=tok_2,
        transformer=tiny_flux_transformer(seed + 3),
    )


def build_tiny_flux(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny FluxPipeline folder (safetensors) and return its path."""
    folder = Path(folder)
    tiny_flux_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder
