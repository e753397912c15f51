"""evaluate_sampler end to end on a real (tiny, random) FLUX adapter and the digits metrics."""

from __future__ import annotations

import math

import pytest
import torch

from sid_ray.config.schema import ModelConfig
from sid_ray.eval.digits_classifier import DigitsClassifier
from sid_ray.eval.digits_metrics import DigitsQuality
from sid_ray.eval.evaluate import (
    euler_sampler,
    evaluate_sampler,
    format_table,
    generator_sampler,
    sample_images,
    write_comparison_grid,
)
from sid_ray.eval.prompts import digits_prompt_set
from sid_ray.models.registry import build_adapter


@pytest.fixture(scope="module")
def adapter():
    return build_adapter(ModelConfig(name="flux-tiny", resolution=16))


@pytest.fixture(scope="module")
def metrics():
    torch.manual_seed(0)
    return DigitsQuality(classifier=DigitsClassifier().eval())  # untrained: this checks plumbing, not quality


def test_samples_do_not_depend_on_the_batch_size(adapter) -> None:
    prompts = digits_prompt_set(6, seed=11)
    sampler = euler_sampler(adapter.teacher, num_steps=2)
    whole, _ = sample_images(adapter, sampler, prompts, batch_size=6)
    parts, _ = sample_images(adapter, sampler, prompts, batch_size=4)
    assert whole.shape == (6, 3, 16, 16)
    assert torch.allclose(whole, parts, atol=1e-5)
    assert 0 <= whole.min() and whole.max() <= 1


def test_generator_sampler_prefix_is_the_k_step_rollout(adapter) -> None:
    prompts = digits_prompt_set(4, seed=0)
    one_of_four, _ = sample_images(adapter, generator_sampler(adapter.teacher, 1, 4), prompts)
    one_of_one, _ = sample_images(adapter, generator_sampler(adapter.teacher, 1, 1), prompts)
    four, _ = sample_images(adapter, generator_sampler(adapter.teacher, 4, 4, seed=5), prompts)
    again, _ = sample_images(adapter, generator_sampler(adapter.teacher, 4, 4, seed=5), prompts)
    assert torch.equal(one_of_four, one_of_one)  # step 1 is x0_hat at t = 1 whatever K is
    assert torch.equal(four, again)
    assert not torch.allclose(four, one_of_four)


def test_row_table_and_grid(adapter, metrics, tmp_path) -> None:
    prompts = digits_prompt_set(20, seed=1)
    row, images = evaluate_sampler("teacher", adapter, euler_sampler(adapter.teacher, 2), 2, prompts, metrics)
    assert row.num_samples == 20 and row.steps == 2
    assert math.isfinite(row.fid) and row.fid >= 0
    assert 0 <= row.alignment <= 100 and row.seconds_per_image > 0
    table = format_table([row], metrics.alignment_name)
    assert "teacher" in table and metrics.alignment_name in table
    path = write_comparison_grid({"a": images, "b": images}, prompts, tmp_path / "g.png")
    assert path.is_file()
