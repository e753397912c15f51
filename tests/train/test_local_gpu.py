"""The single-process loop and the evaluation on a GPU (skipped where CUDA is absent: CI)."""

import math

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.eval.evaluate import euler_sampler, sample_images
from sid_ray.eval.prompts import digits_prompt_set
from sid_ray.models.registry import build_adapter
from sid_ray.train.local import run_local

pytestmark = pytest.mark.gpu

DIGITS = ["model.name=digits-flux", "model.resolution=16", "train.batch_size=32", "train.micro_batch_size=16"]


def test_run_local_trains_the_digits_generator_on_cuda(tmp_path):
    config = load_config(
        None,
        [
            *DIGITS,
            "train.total_kimg=0.096",
            "train.log_every=1",
            "train.use_gpu=true",
            f"output_dir={tmp_path}",
        ],
    )
    result = run_local(config, ["a handwritten seven", "a handwritten two"], log=None)
    assert len(result.history) == 3
    assert all(math.isfinite(v) for row in result.history for v in row.values())
    params = dict(result.generator.named_parameters())
    assert all(p.device.type == "cuda" for p in params.values())
    start = build_adapter(config).make_trainable_copy("generator").state_dict()
    assert any(not torch.equal(p.detach().cpu(), start[k]) for k, p in params.items() if k in start)


def test_teacher_samples_on_cuda_match_the_cpu():
    """Noise is drawn on the CPU per sample seed, so the deterministic Euler gives the same images."""
    config = load_config(None, DIGITS)
    prompts = digits_prompt_set(64, seed=1234)
    cpu_adapter = build_adapter(config)
    cpu_images, _ = sample_images(cpu_adapter, euler_sampler(cpu_adapter.teacher, 4), prompts)
    gpu_adapter = build_adapter(config).to("cuda")
    gpu_images, _ = sample_images(gpu_adapter, euler_sampler(gpu_adapter.teacher, 4), prompts)
    assert gpu_images.device.type == "cpu"
    torch.testing.assert_close(gpu_images, cpu_images, atol=1e-2, rtol=0)  # cuDNN convs may use TF32
