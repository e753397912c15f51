"""Full-size teachers instantiate on the meta device from their real configs (no download, no memory)."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

from sid_ray.models.flux import FLUX_DEV_TRANSFORMER_CONFIG

# stabilityai/stable-diffusion-3.5-large transformer/config.json, written out independently of
# sid_ray.models.sd3 so that a mistake there is caught here
SD35_LARGE = {
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


def meta_parameter_count(cls, config: dict) -> int:
    with torch.device("meta"):
        model = cls.from_config(config)
    assert all(p.is_meta for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def test_flux_dev_is_11_9b():
    n = meta_parameter_count(FluxTransformer2DModel, FLUX_DEV_TRANSFORMER_CONFIG)
    assert n == pytest.approx(11.9e9, rel=0.02), n


def test_sd35_large_is_8_1b():
    n = meta_parameter_count(SD3Transformer2DModel, SD35_LARGE)
    assert n == pytest.approx(8.1e9, rel=0.02), n


def test_family_module_holds_the_sd35_large_config():
    sd3 = pytest.importorskip("sid_ray.models.sd3")
    assert {k: sd3.SD35_LARGE_TRANSFORMER[k] for k in SD35_LARGE} == SD35_LARGE
