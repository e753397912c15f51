"""Checkpoints on S3 (`train.storage_path=s3://...`), resumed after the Ray head restarts.

A real S3-compatible server runs on loopback (tests/data/s3_server.py). The digits teacher trains
4 of 8 iterations with its checkpoints in the bucket; the local Ray cluster is then shut down and
a new one started, as after a head restart, and the same run name resumes from the bucket's last
checkpoint. The resumed run must end where an uninterrupted run (checkpoints in a local folder)
ends, to float32 rounding, as in tests/train/test_resume.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from sid_ray.config import load_config
from sid_ray.eval.run_report import exported_generators
from sid_ray.train.launcher import launch
from sid_ray.train.run_storage import checkpoint_storage
from tests.data.s3_server import local_ray, s3_keys, s3_server

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "sid-ray-checkpoints"
BATCH = 8
TOTAL_ITERATIONS = 8
CHECKPOINT_EVERY = 4
GENERATOR_RTOL = 1e-6  # as test_resume.py: bit-identical state, only reduction order may differ


def digits_config(output_dir: Path, name: str, iterations: int, storage: str = ""):
    return load_config(
        None,
        [
            f"name={name}",
            f"output_dir={output_dir}",
            "model.name=digits-flux",
            "model.resolution=16",
            f"data.prompts={ROOT / 'configs/prompts/digits.txt'}",
            f"train.batch_size={BATCH}",
            "train.micro_batch_size=2",
            "train.num_workers=2",
            "train.cpus_per_worker=0.5",
            "train.log_every=1",
            "train.keep_checkpoints=0",
            f"train.total_kimg={iterations * BATCH / 1000}",
            f"train.checkpoint_every_kimg={CHECKPOINT_EVERY * BATCH / 1000}",
            f"train.storage_path={storage}",
            "optim.generator_lr=1e-4",
            "optim.fake_lr=1e-4",
        ],
    )


def _generator(result) -> torch.Tensor:
    state = load_file(result.export_dir / "generator.safetensors")
    return torch.cat([state[k].double().flatten() for k in sorted(state)])


@pytest.mark.ray
@pytest.mark.slow
def test_checkpoints_on_s3_resume_after_the_head_restarts(tmp_path):
    resume_after_head_restart(tmp_path, "s3", s3_server, s3_keys)


def resume_after_head_restart(tmp_path: Path, scheme: str, server, keys_of) -> None:
    """Half the run with its checkpoints in a bucket of `server` (a context manager taking the
    bucket name; `keys_of(bucket, prefix)` lists its keys), a new Ray head, the rest resumed from
    the bucket; the losses and G must be the uninterrupted local run's (test_storage_gcs.py too)."""
    uri, name = f"{scheme}://{BUCKET}/runs", f"on-{scheme}"
    with server(BUCKET):
        with local_ray():
            reference = launch(digits_config(tmp_path / "local", "uninterrupted", TOTAL_ITERATIONS), False)
            half = launch(digits_config(tmp_path / scheme, name, TOTAL_ITERATIONS // 2, uri), False)
        assert half.metrics["iteration"] == TOTAL_ITERATIONS // 2
        assert half.checkpoint_path == f"{uri}/{name}/checkpoint_{CHECKPOINT_EVERY:08d}"
        keys = keys_of(BUCKET, f"runs/{name}/")
        assert f"runs/{name}/checkpoint_{CHECKPOINT_EVERY:08d}/train_state.json" in keys
        assert any(
            k.startswith(f"runs/{name}/checkpoint_{CHECKPOINT_EVERY:08d}/generator/state/") for k in keys
        )
        assert not list((tmp_path / scheme / name).glob("checkpoint_*"))  # nothing stored locally

        with local_ray():  # a new head: the run's only state is in the bucket
            full = launch(digits_config(tmp_path / scheme, name, TOTAL_ITERATIONS, uri), False)
        assert f"runs/{name}/checkpoint_{TOTAL_ITERATIONS:08d}/train_state.json" in keys_of(BUCKET, "runs/")
        # the quality report (jobs/demo.py) reads the checkpoints' generators in the bucket
        fs, folder = checkpoint_storage(digits_config(tmp_path, name, TOTAL_ITERATIONS, uri))
        assert folder == f"{BUCKET}/runs/{name}"
        stored = exported_generators(folder, fs)
        assert stored and stored[-1][0] == pytest.approx(TOTAL_ITERATIONS * BATCH / 1000)
        assert stored[-1][1] == f"{folder}/checkpoint_{TOTAL_ITERATIONS:08d}/export/generator.safetensors"
        with fs.open_input_stream(stored[-1][1]) as stream:
            in_bucket = load_safetensors(stream.read())

    assert full.rows[0]["resumed_from_kimg"] == pytest.approx(TOTAL_ITERATIONS // 2 * BATCH / 1000)
    assert [r["iteration"] for r in full.rows] == list(range(TOTAL_ITERATIONS // 2 + 1, TOTAL_ITERATIONS + 1))
    ref_rows = {r["iteration"]: r for r in reference.rows}
    for row in full.rows:
        for key in ("loss/fake", "loss/generator"):
            assert row[key] == pytest.approx(ref_rows[row["iteration"]][key], rel=1e-5), (
                row["iteration"],
                key,
            )
    assert (full.export_dir / "generator.safetensors").is_file()  # downloaded from the bucket
    local = load_file(full.export_dir / "generator.safetensors")
    assert all(torch.equal(in_bucket[k], local[k]) for k in local) and in_bucket.keys() == local.keys()
    ref, got = _generator(reference), _generator(full)
    relative = float((got - ref).norm() / ref.norm())
    print(f"resumed from {scheme} at iteration {TOTAL_ITERATIONS // 2}: |G - G_ref|/|G_ref| = {relative:.2e}")
    assert relative <= GENERATOR_RTOL
