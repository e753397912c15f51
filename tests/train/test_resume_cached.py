"""A run trained from an embedding cache in object storage (s3:// on a real S3-compatible server
on loopback), stopped and started again by name: it resumes at its checkpoint with the stream
beginning there (the workers announce the iteration, no skipped row is read), and its losses are
those of an uninterrupted run from a local copy of the cache, bit for bit."""

from __future__ import annotations

import pytest
import ray

from sid_ray.data.stream_start import stream_start_name
from sid_ray.train.launcher import launch
from tests.data.s3_server import local_ray, s3_keys, s3_server
from tests.train.test_embedding_training import LOSSES, cached, teachers, tiny_config  # noqa: F401

BUCKET = "sid-ray-cached-resume"
BATCH, TOTAL, HALF = 4, 4, 2  # iterations


def _config(tmp_path, teachers, name: str, cache: str, iterations: int):  # noqa: F811
    config = tiny_config(
        tmp_path,
        teachers,
        "flux",
        f"name={name}",
        f"train.total_kimg={iterations * BATCH / 1000}",
        f"train.checkpoint_every_kimg={HALF * BATCH / 1000}",
        "train.log_every=1",
        "train.cpus_per_worker=0.5",
    )
    assert config.train.batch_size == BATCH
    return cached(config, cache)


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_from_an_s3_cache_resumes_where_it_stopped(tmp_path, teachers):  # noqa: F811
    uri = f"s3://{BUCKET}/emb/flux-tiny"
    with s3_server(BUCKET), local_ray():
        whole = launch(_config(tmp_path, teachers, "whole", str(tmp_path / "cache"), TOTAL), False)
        half = launch(_config(tmp_path, teachers, "halves", uri, HALF), False)  # builds the cache in S3
        assert "emb/flux-tiny/manifest.json" in s3_keys(BUCKET, "emb/")
        full = launch(_config(tmp_path, teachers, "halves", uri, TOTAL), False)
        announced = ray.get(ray.get_actor(stream_start_name("halves")).get.remote())

    assert half.metrics["iteration"] == HALF and announced == HALF
    assert full.rows[0]["resumed_from_kimg"] == pytest.approx(HALF * BATCH / 1000)
    assert [r["iteration"] for r in full.rows] == list(range(HALF + 1, TOTAL + 1))
    reference = {r["iteration"]: r for r in whole.rows}
    for row in [*half.rows, *full.rows]:
        assert [row[k] for k in LOSSES] == [reference[row["iteration"]][k] for k in LOSSES], row["iteration"]
