"""A resumed run's stream begins at its checkpoint: the rows of trained iterations are dropped
before the stream's UDF runs, so their embeddings are never read, and the rows it serves are
exactly the uninterrupted stream's from there on."""

from __future__ import annotations

import os

import numpy as np
import pytest
import ray
import ray.data

from sid_ray.data.embedding_build import build_embedding_cache
from sid_ray.data.embedding_stream import RankEmbeddings, RankEmbeddingStream
from sid_ray.data.prompts import PROMPT_STREAM, rows_per_rank
from sid_ray.data.stream_start import stream_start_actor
from tests.data.test_embedding_cache import embed_config, flux_folder  # noqa: F401 (fixture)

BATCH, WORLD, ITERATIONS, START = 4, 2, 6, 4


class CountingEmbeddings(RankEmbeddings):
    """The real UDF, writing how many rows it read embeddings for (it runs in Ray Data tasks)."""

    def __init__(self, *args, counts: str):
        super().__init__(*args)
        self.counts = counts

    def __call__(self, batch):
        with open(self.counts, "a") as file:
            file.write(f"{len(batch['id'])}\n")
        return super().__call__(batch)


class CountingStream(RankEmbeddingStream):
    def __init__(self, *args, counts: str):
        super().__init__(*args)
        self.counts = counts

    def rank_udf(self, rank, world):
        return CountingEmbeddings(self.folder, self.seed, rank, world, self.batch_size, counts=self.counts)


def _rank_rows(stream, rank: int) -> dict[str, np.ndarray]:
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    rows = ray.data.range(rows_per_rank(ITERATIONS, BATCH, WORLD))
    iterators = stream.configure({PROMPT_STREAM: rows}, WORLD, None, None)
    batches = list(iterators[rank][PROMPT_STREAM].iter_batches(batch_size=None, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _decoded(counts) -> int:
    total = sum(int(line) for line in counts.read_text().split()) if counts.exists() else 0
    counts.unlink(missing_ok=True)
    return total


@pytest.mark.ray
def test_a_resumed_stream_reads_no_embedding_of_trained_iterations(tmp_path, flux_folder, ray_local):  # noqa: F811
    config = embed_config(tmp_path, flux_folder)
    build_embedding_cache(config, log=lambda line: None)
    counts = tmp_path / "decoded_rows"
    stream = CountingStream(tmp_path / "cache", 3, BATCH, counts=str(counts))
    per_rank = BATCH // WORLD

    whole = _rank_rows(stream, rank=1)
    assert _decoded(counts) == ITERATIONS * per_rank

    stream.start = stream_start_actor(f"test-{os.getpid()}")
    ray.get(stream.start.set.remote(START))
    resumed = _rank_rows(stream, rank=1)
    # embeddings read only for the iterations still to train, none for the START trained ones
    assert _decoded(counts) == (ITERATIONS - START) * per_rank
    assert int(resumed["position"][0]) == START * BATCH + per_rank
    for key, values in resumed.items():
        np.testing.assert_array_equal(values, whole[key][START * per_rank :], err_msg=key)
