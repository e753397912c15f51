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


def full_size_config(
    tmp_path: Path,
    model: str,
    resolution: int,
    use_gpu: bool,
    kimg: float,
    export: bool,
    extra: tuple[str, ...] = (),
):
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
            *extra,
            # more settings for a GPU run, e.g. GPU_TEST_SET="train.attention_backend=cudnn"
            *os.environ.get("GPU_TEST_SET", "").split(),
        ],
    )


def train_resume_export(
    tmp_path: Path, model: str, resolution: int, use_gpu: bool, extra: tuple[str, ...] = ()
):
    """Two iterations and a checkpoint; then the same name again: resume, a third, the export."""
    from sid_ray.train.launcher import launch

    config = full_size_config(tmp_path, model, resolution, use_gpu, 0.002, False, extra)
    first = launch(config, show_progress=True)
    assert [row["iteration"] for row in first.rows] == [1, 2]
    assert first.checkpoint_path is not None
    second = launch(
        full_size_config(tmp_path, model, resolution, use_gpu, 0.003, True, extra), show_progress=True
    )
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
    # GPU_TEST_CACHED_EVAL=1: from an embedding cache, with in-training evaluation (the CPU test below)
    cached_eval = os.environ.get("GPU_TEST_CACHED_EVAL") == "1"
    extra = cached_evaluation_settings(tmp_path) if cached_eval else ()
    ray.init(address="local", include_dashboard=False)
    try:
        first, second = train_resume_export(tmp_path, "flux-dev", 512, True, extra)
    finally:
        ray.shutdown()
    if cached_eval:
        check_cached_evaluation(tmp_path, first, second)
    for row in first.rows + second.rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        assert row["gpu_mem_peak_gb"] < 75  # fits an 80 GB GPU
    check_export(second, FLUX_DEV_PARAMETERS)


@pytest.mark.ray
@pytest.mark.slow
def test_tiny_flux_shared_base_lora_resumes_and_exports_on_cpu(tmp_path, ray_cluster):
    _, second = train_resume_export(tmp_path, "flux-tiny", 32, use_gpu=False)
    check_export(second, None)


def cached_evaluation_settings(tmp_path: Path) -> tuple[str, ...]:
    """Train from an embedding cache and evaluate in training on the held-out prompt ("an old map
    of the sea" at this fraction) with stand-ins for the evaluation's downloaded files."""
    from sid_ray.eval.stand_in_files import write_eval_files

    files = write_eval_files(tmp_path / "eval-files")
    return (
        f"data.embedding_cache={tmp_path / 'embeddings'}",
        "data.eval_prompt_fraction=0.4",
        "eval.every_kimg=0.002",
        "eval.num_samples=2",
        "eval.batch_size=1",
        "eval.grid_samples=2",
        *(f"{k}={v}" for k, v in files.items()),
    )


def check_cached_evaluation(tmp_path: Path, first, second) -> None:
    manifest = json.loads((tmp_path / "embeddings" / "manifest.json").read_text())
    assert (manifest["count"], manifest["eval_count"], manifest["encoded"]) == (3, 1, 3)  # each prompt once
    assert manifest["eval_set"] == {"prompts": 1, "from_shards": 1, "file": None, "file_rows": 0}
    evaluated = [row for row in first.rows + second.rows if "eval_fid" in row]
    assert [row["iteration"] for row in evaluated] == [2, 3]  # at 0.002 kimg and at the run's end
    for row in evaluated:
        assert 0 < row["eval_fid"] < math.inf and row["eval_num_samples"] == 2, row


@pytest.mark.ray
@pytest.mark.slow
def test_tiny_flux_trains_from_the_cache_and_evaluates_held_out_prompts_on_cpu(tmp_path, ray_cluster):
    """The tiny FLUX: the cached run's workers evaluate on the held-out prompt's embeddings, read
    from the cache's shards (the GPU test runs the same settings at full size: GPU_TEST_SET)."""
    first, second = train_resume_export(
        tmp_path, "flux-tiny", 32, False, cached_evaluation_settings(tmp_path)
    )
    check_cached_evaluation(tmp_path, first, second)
