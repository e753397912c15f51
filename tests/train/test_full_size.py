"""A full-size teacher through the product path: launcher -> Ray Train -> DeepSpeed -> export.

On a GPU (`pytest -m gpu`, skipped in CI) this is FLUX.1-dev: 11.9 B parameters with random
weights built on the GPU (`model.init=random`), shared-base LoRA rank 64, gradient checkpointing,
bf16, 512 px, 512 T5 tokens, teacher guidance 3.5. Two iterations, a checkpoint, then the same
run name resumed for a third iteration and the export. On the CPU the same steps run on the tiny
FLUX with random weights, so CI keeps the path honest. Run it on the GPU whenever the training
path changes (shared/GPU.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from safetensors import safe_open

from sid_ray.config import load_config

FLUX_DEV_PARAMETERS = 11.9e9


def full_size_config(tmp_path: Path, model: str, resolution: int, use_gpu: bool, kimg: float, export: bool):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox in the snow\na city at night\nan old map of the sea\n")
    return load_config(
        None,
        [
            "name=full-size",
            f"output_dir={tmp_path / 'runs'}",
            f"model.name={model}",
            "model.init=random",
            "model.dtype=bfloat16",
            f"model.resolution={resolution}",
            "model.gradient_checkpointing=true",
            "model.lora.mode=shared_base",
            "sid.teacher_guidance=3.5",
            f"data.prompts={prompts}",
            f"train.use_gpu={str(use_gpu).lower()}",
            "train.num_workers=1",
            "train.batch_size=1",
            "train.micro_batch_size=1",
            f"train.total_kimg={kimg}",
            "train.checkpoint_every_kimg=0.002",
            "train.log_every=1",
            "train.mixed_precision=bf16",
            "train.keep_checkpoints=1",
            "train.max_failures=0",
            f"train.export_pipeline={str(export).lower()}",
            "optim.generator_lr=1e-5",
            "optim.fake_lr=1e-5",
            # more settings for a GPU run, e.g. GPU_TEST_SET="train.attention_backend=cudnn"
            *os.environ.get("GPU_TEST_SET", "").split(),
        ],
    )


def train_resume_export(tmp_path: Path, model: str, resolution: int, use_gpu: bool):
    """Two iterations and a checkpoint; then the same name again: resume, a third, the export."""
    from sid_ray.train.launcher import launch

    first = launch(full_size_config(tmp_path, model, resolution, use_gpu, 0.002, False), show_progress=True)
    assert [row["iteration"] for row in first.rows] == [1, 2]
    assert first.checkpoint_path is not None
    second = launch(full_size_config(tmp_path, model, resolution, use_gpu, 0.003, True), show_progress=True)
    assert [row["iteration"] for row in second.rows] == [3]
    assert second.rows[0]["resumed_from_kimg"] == pytest.approx(0.002)
    for row in first.rows + second.rows:
        assert math.isfinite(row["loss/fake"]) and math.isfinite(row["loss/generator"]), row
        assert row["nan_dropped_samples"] == 0
    return first, second


def exported_transformer(export_dir: Path) -> tuple[dict, int, set[str]]:
    """(config, parameter count, key set) of the exported pipeline's transformer, from its files."""
    folder = export_dir / "pipeline" / "transformer"
    config = json.loads((folder / "config.json").read_text())
    count, keys = 0, set()
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            for key in f.keys():
                keys.add(key)
                shape = f.get_slice(key).get_shape()
                count += math.prod(shape)
    return config, count, keys


def check_export(result, teacher_parameters: float | None) -> None:
    assert result.export_dir is not None and (result.export_dir / "generator.safetensors").is_file()
    with safe_open(result.export_dir / "generator.safetensors", "pt") as f:
        lora_keys = list(f.keys())
    assert lora_keys and all("lora_" in key for key in lora_keys)  # shared base: G's adapter only
    config, count, keys = exported_transformer(result.export_dir)
    assert config["guidance_embeds"] is False  # G's guidance embedding folded into the bias
    assert not any("lora_" in key or "guidance_embedder" in key for key in keys)
    if teacher_parameters is not None:  # the guidance embedder (~ 13 M) is folded away
        assert count == pytest.approx(teacher_parameters, rel=0.01)


@pytest.mark.gpu
def test_flux_dev_shared_base_lora_on_one_gpu(tmp_path):
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway local cluster
    ray.init(address="local", include_dashboard=False)
    try:
        first, second = train_resume_export(tmp_path, "flux-dev", 512, use_gpu=True)
    finally:
        ray.shutdown()
    for row in first.rows + second.rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        assert row["gpu_mem_peak_gb"] < 75  # fits an 80 GB GPU
    check_export(second, FLUX_DEV_PARAMETERS)


@pytest.mark.ray
@pytest.mark.slow
def test_tiny_flux_shared_base_lora_resumes_and_exports_on_cpu(tmp_path, ray_cluster):
    _, second = train_resume_export(tmp_path, "flux-tiny", 32, use_gpu=False)
    check_export(second, None)
