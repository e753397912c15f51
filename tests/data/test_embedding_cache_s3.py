"""The embedding cache in object storage: built into s3:// on a real S3-compatible server on
loopback (moto's server mode), then read back through the code the training workers run (the
per-rank Ray Data stream and the conditioning it feeds), equal to the same cache on local disk."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import ray
import ray.data
import torch

from sid_ray.data.embedding_build import build_embedding_cache, ensure_embedding_cache
from sid_ray.data.embedding_stream import CachedConditioning, RankEmbeddingStream
from sid_ray.data.prompts import PROMPT_STREAM, rows_per_rank
from sid_ray.train.cached_prompts import with_absolute_cache
from tests.data.s3_server import local_ray, s3_keys, s3_server
from tests.data.test_embedding_cache import embed_config, flux_folder  # noqa: F401 (fixture)

BUCKET = "sid-ray-embeddings"
BATCH, WORLD, ITERATIONS = 4, 2, 3


def _stream_rows(folder: str, rank: int) -> dict[str, np.ndarray]:
    """Rank `rank`'s rows as a Ray Train worker gets them from `get_dataset_shard`."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    stream = RankEmbeddingStream(folder, 3, BATCH)
    rows = ray.data.range(rows_per_rank(ITERATIONS, BATCH, WORLD))
    iterator = stream.configure({PROMPT_STREAM: rows}, WORLD, None, None)[rank][PROMPT_STREAM]
    batches = list(iterator.iter_batches(batch_size=None, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _conditioning(folder: str, rows: dict[str, np.ndarray]):
    embeddings = {k: v for k, v in rows.items() if k.startswith("emb:")}
    return CachedConditioning(folder)(rows["prompt"], embeddings).conditioning


@pytest.mark.ray
def test_a_cache_built_into_s3_serves_what_a_local_one_does(tmp_path, flux_folder):  # noqa: F811
    local = embed_config(tmp_path, flux_folder)
    uri = f"s3://{BUCKET}/emb/flux-tiny"
    on_s3 = dataclasses.replace(local, data=dataclasses.replace(local.data, embedding_cache=uri))
    assert with_absolute_cache(on_s3).data.embedding_cache == uri  # a URI is not made a local path
    with s3_server(BUCKET), local_ray():
        local_manifest = build_embedding_cache(local, log=lambda line: None)
        s3_manifest = build_embedding_cache(on_s3, log=lambda line: None)
        keys = s3_keys(BUCKET, "emb/flux-tiny/")
        lines = []
        assert ensure_embedding_cache(on_s3, log=lines.append) == s3_manifest  # read back: a cache hit
        assert "cache hit" in lines[0]
        rows = {
            rank: (_stream_rows(uri, rank), _stream_rows(str(tmp_path / "cache"), rank)) for rank in (0, 1)
        }
        s3_conditioning = {rank: _conditioning(uri, rows[rank][0]) for rank in rows}
        s3_null = CachedConditioning(uri).null

    assert {"emb/flux-tiny/manifest.json", "emb/flux-tiny/null.parquet"} <= set(keys)
    assert {f"emb/flux-tiny/shards/{s['file']}" for s in s3_manifest["shards"]} <= set(keys)
    same = ("count", "train_count", "eval_count", "layout", "shards", "truncated", "prompts_sha")
    assert {k: s3_manifest[k] for k in same} == {k: local_manifest[k] for k in same}
    for rank, (from_s3, from_disk) in rows.items():
        assert len(from_s3["position"]) == ITERATIONS * BATCH // WORLD
        for key in from_disk:
            np.testing.assert_array_equal(from_s3[key], from_disk[key], err_msg=f"rank {rank} {key}")
        disk_conditioning = _conditioning(str(tmp_path / "cache"), from_disk)
        for key, tensor in disk_conditioning.tensors.items():
            assert torch.equal(s3_conditioning[rank].tensors[key], tensor), key  # bit for bit
    for key, tensor in CachedConditioning(tmp_path / "cache").null.items():
        assert torch.equal(s3_null[key], tensor), key
