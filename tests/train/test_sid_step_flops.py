"""benchmarks/sid_step.py counts model FLOPs on the real architectures (meta device, no weights)."""

import pytest

from benchmarks.sid_step import forward_flops
from sid_ray.config import load_config


def flops(name: str, resolution: int) -> float:
    config = load_config(None, [f"model.name={name}", "model.init=random", f"model.resolution={resolution}"])
    return forward_flops(config) / 1e12


def test_flux_dev_forward_flops_follow_the_stated_formula():
    # matmul parameters each token passes through x 2 x tokens + 4 x 57 blocks x tokens^2 x 3072
    width, hidden = 3072, 4 * 3072
    per_block = 4 * width * width + 2 * width * hidden  # q, k, v, out + the MLP's two layers
    for resolution in (512, 1024):
        text, image = 512, (resolution // 16) ** 2
        per_token = 2 * (57 * per_block) * (text + image)  # one stream of the 19 double + 38 single
        embedders = 2 * (4096 * width * text + 2 * 64 * width * image)  # context in; x in, out
        attention = 4 * 57 * (text + image) ** 2 * width
        expected = per_token + embedders + attention  # + the per-image modulation layers (< 0.1%)
        assert flops("flux-dev", resolution) == pytest.approx(expected / 1e12, rel=1e-3)
    assert flops("flux-dev", 512) == pytest.approx(21.5, abs=0.05)  # shared/GPU.md
    assert flops("flux-dev", 1024) == pytest.approx(74.4, abs=0.05)
