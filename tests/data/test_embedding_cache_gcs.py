"""The embedding cache in gs://, on a GCS emulator on loopback (tests/data/gcs_server.py): built
there by the embedding job's actors, then read back through the code the training workers run
(the per-rank Ray Data stream and the conditioning it feeds), equal to the same cache on local
disk; the prompt files are read from the bucket too."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from sid_ray.data.embedding_build import build_embedding_cache, ensure_embedding_cache
from sid_ray.data.embedding_stream import CachedConditioning
from sid_ray.data.storage import GCS_EMULATOR_ENV, StoragePath, filesystem_from_uri, ray_read_args
from sid_ray.train.cached_prompts import with_absolute_cache
from tests.data.gcs_server import gcs_keys, gcs_server
from tests.data.s3_server import local_ray
from tests.data.test_embedding_cache import embed_config, flux_folder  # noqa: F401 (fixture)
from tests.data.test_embedding_cache_s3 import _conditioning, _stream_rows

BUCKET = "sid-ray-embeddings"


def test_storage_emulator_host_names_the_gcs_file_system(monkeypatch):
    monkeypatch.setenv(GCS_EMULATOR_ENV, "127.0.0.1:9023")
    fs, path = filesystem_from_uri("gs://bucket/emb/flux/")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "bucket/emb/flux"
    assert StoragePath("gs://bucket/emb").path == "bucket/emb"
    assert ray_read_args(["gs://b/p.txt"]) == {"paths": ["b/p.txt"], "filesystem": fs}
    assert ray_read_args(["/tmp/p.txt"]) == {"paths": ["/tmp/p.txt"]}
    with pytest.raises(ValueError, match="not both"):
        ray_read_args(["gs://b/p.txt", "/tmp/p.txt"])
    monkeypatch.delenv(GCS_EMULATOR_ENV)
    assert ray_read_args(["gs://b/p.txt"]) == {"paths": ["gs://b/p.txt"]}


@pytest.mark.ray
@pytest.mark.slow  # ~2 minutes on 2 CPUs
def test_a_cache_built_into_gcs_serves_what_a_local_one_does(tmp_path, flux_folder):  # noqa: F811
    local = embed_config(tmp_path, flux_folder)
    uri = f"gs://{BUCKET}/emb/flux-tiny"
    prompts_uri = f"gs://{BUCKET}/prompts/{StoragePath(local.data.prompts).name}"
    with gcs_server(BUCKET), local_ray():
        remote_prompts = StoragePath(prompts_uri)
        remote_prompts.write_text(StoragePath(local.data.prompts).read_text())
        data = dataclasses.replace(local.data, embedding_cache=uri, prompts=prompts_uri)
        on_gcs = dataclasses.replace(local, data=data)
        assert with_absolute_cache(on_gcs).data.embedding_cache == uri  # a URI is not made a local path
        local_manifest = build_embedding_cache(local, log=lambda line: None)
        gcs_manifest = build_embedding_cache(on_gcs, log=lambda line: None)
        keys = gcs_keys(BUCKET, "emb/flux-tiny/")
        lines = []
        assert ensure_embedding_cache(on_gcs, log=lines.append) == gcs_manifest  # read back: a cache hit
        assert "cache hit" in lines[0]
        rows = {
            rank: (_stream_rows(uri, rank), _stream_rows(str(tmp_path / "cache"), rank)) for rank in (0, 1)
        }
        gcs_conditioning = {rank: _conditioning(uri, rows[rank][0]) for rank in rows}
        gcs_null = CachedConditioning(uri).null

    assert {"emb/flux-tiny/manifest.json", "emb/flux-tiny/null.parquet"} <= set(keys)
    assert {f"emb/flux-tiny/shards/{s['file']}" for s in gcs_manifest["shards"]} <= set(keys)
    same = (
        "count",
        "train_count",
        "eval_count",
        "layout",
        "shards",
        "truncated",
        "prompts_sha",
        "read_counts",
    )
    assert {k: gcs_manifest[k] for k in same} == {k: local_manifest[k] for k in same}
    for rank, (from_gcs, from_disk) in rows.items():
        assert len(from_gcs["position"]) > 0
        for key in from_disk:
            np.testing.assert_array_equal(from_gcs[key], from_disk[key], err_msg=f"rank {rank} {key}")
        disk_conditioning = _conditioning(str(tmp_path / "cache"), from_disk)
        for key, tensor in disk_conditioning.tensors.items():
            assert torch.equal(gcs_conditioning[rank].tensors[key], tensor), key  # bit for bit
    for key, tensor in CachedConditioning(tmp_path / "cache").null.items():
        assert torch.equal(gcs_null[key], tensor), key
