"""The shipped digits teacher draws the digits it is asked for (slow: ~1,000 teacher samples)."""

from __future__ import annotations

import pytest
import torch

from sid_ray.config.schema import ModelConfig
from sid_ray.eval.digits_metrics import DigitsQuality
from sid_ray.eval.evaluate import euler_sampler, evaluate_sampler
from sid_ray.eval.prompts import digits_prompt_set
from sid_ray.models.registry import build_adapter
from sid_ray.toys.digits import SHIPPED_FOLDER
from sid_ray.toys.digits_data import load_digit_images

pytestmark = pytest.mark.slow
NUM_SAMPLES = 500


@pytest.fixture(scope="module")
def setup():
    if not (SHIPPED_FOLDER / "model_index.json").is_file():
        pytest.skip("no shipped digits teacher in this checkout")
    adapter = build_adapter(ModelConfig(name="digits-flux", resolution=16))
    return adapter, DigitsQuality(), digits_prompt_set(NUM_SAMPLES)


def test_teacher_32_step_digits_match_prompts_and_beat_4_steps(setup) -> None:
    adapter, metrics, prompts = setup
    row32, _ = evaluate_sampler("t32", adapter, euler_sampler(adapter.teacher, 32), 32, prompts, metrics)
    row4, _ = evaluate_sampler("t4", adapter, euler_sampler(adapter.teacher, 4), 4, prompts, metrics)
    assert row32.alignment >= 85.0, row32
    assert row32.fid < row4.fid, (row32, row4)
    # far from random images and from one-class output: within reach of the data's own spread
    real, labels = load_digit_images()
    sevens_only = metrics.fid(real[labels == 7])
    assert row32.fid < 0.5 * sevens_only, (row32, sevens_only)


def test_unguided_and_guided_passes_differ(setup) -> None:
    adapter, _, prompts = setup
    part = prompts.slice(0, 8)
    cond = adapter.encode_prompts(list(part.prompts))
    z = part.noise(tuple(adapter.latent_shape))
    t = torch.full((8,), 0.7)
    v_c = adapter.teacher.velocity(z, t, cond)
    v_u = adapter.teacher.velocity(z, t, cond.unconditional())
    assert (v_c - v_u).abs().mean() > 1e-3  # the prompt matters (prompt dropout trained both)
