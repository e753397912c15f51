"""Checkpoints on GCS (`train.storage_path=gs://...`), resumed after the Ray head restarts.

A GCS emulator runs on loopback (tests/data/gcs_server.py; STORAGE_EMULATOR_HOST points pyarrow at
it, `sid_ray.data.storage`). As tests/train/test_storage_s3.py: the digits teacher trains 4 of 8
iterations with its checkpoints in the bucket, the local Ray cluster is shut down and a new one
started, and the same run name resumes from the bucket's last checkpoint, ending where an
uninterrupted run with local checkpoints ends.
"""

from __future__ import annotations

import pytest

from sid_ray.train.launcher import launch
from tests.data.gcs_server import gcs_keys, gcs_server
from tests.data.s3_server import local_ray
from tests.train.test_storage_s3 import (
    BATCH,
    CHECKPOINT_EVERY,
    GENERATOR_RTOL,
    TOTAL_ITERATIONS,
    _generator,
    digits_config,
)

BUCKET = "sid-ray-checkpoints"


@pytest.mark.ray
@pytest.mark.slow
def test_checkpoints_on_gcs_resume_after_the_head_restarts(tmp_path):
    uri = f"gs://{BUCKET}/runs"
    with gcs_server(BUCKET):
        with local_ray():
            reference = launch(digits_config(tmp_path / "local", "uninterrupted", TOTAL_ITERATIONS), False)
            half = launch(digits_config(tmp_path / "gcs", "on-gcs", TOTAL_ITERATIONS // 2, uri), False)
        assert half.metrics["iteration"] == TOTAL_ITERATIONS // 2
        assert half.checkpoint_path == f"gs://{BUCKET}/runs/on-gcs/checkpoint_{CHECKPOINT_EVERY:08d}"
        keys = gcs_keys(BUCKET, "runs/on-gcs/")
        assert f"runs/on-gcs/checkpoint_{CHECKPOINT_EVERY:08d}/train_state.json" in keys
        assert any(
            k.startswith(f"runs/on-gcs/checkpoint_{CHECKPOINT_EVERY:08d}/generator/state/") for k in keys
        )
        assert not list((tmp_path / "gcs" / "on-gcs").glob("checkpoint_*"))  # nothing stored locally

        with local_ray():  # a new head: the run's only state is in the bucket
            full = launch(digits_config(tmp_path / "gcs", "on-gcs", TOTAL_ITERATIONS, uri), False)
        assert f"runs/on-gcs/checkpoint_{TOTAL_ITERATIONS:08d}/train_state.json" in gcs_keys(BUCKET, "runs/")

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
    ref, got = _generator(reference), _generator(full)
    relative = float((got - ref).norm() / ref.norm())
    print(f"resumed from gs at iteration {TOTAL_ITERATIONS // 2}: |G - G_ref|/|G_ref| = {relative:.2e}")
    assert relative <= GENERATOR_RTOL
