"""The per-rank stream of real (caption, latent) pairs of a data-aided run.

Pairs follow exactly the prompt stream's law (`sid_ray.data.prompts`): epoch e of the table is
the permutation `epoch_order(N, seed, e)`, global position p is row `prompt_indices([p], N,
seed)`, and rank r of `world` takes positions `rank_positions(local, r, world, batch_size)`. So
N Ray workers see the pairs one process with accumulation sees (`PairCycle`), and a resumed run
continues the exact stream. Workers ask `get_dataset_shard(PROMPT_STREAM)` as in data-free runs;
each row is {"position": int64, "prompt": str caption, "latents": float32 latent_shape}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sid_ray.data.image_pairs import PairTable, load_pair_table
from sid_ray.data.prompts import RankPromptStream, prompt_indices, rank_positions

_BATCH_BYTES = 64 * 2**20  # latents per Ray Data batch of the stream (blocks stay small)


class RankPairs:
    """Ray Data UDF: local row ids of one rank -> positions, captions and latents.

    Holds only the table's folder when pickled; each process opens the table (captions read,
    latents memory-mapped) on its first batch, so shipping the UDF never copies the table.
    """

    def __init__(self, folder: str | Path, seed: int, rank: int, world: int, batch_size: int):
        self.folder, self.seed = str(folder), seed
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self._table: PairTable | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_table": None}

    def table(self) -> PairTable:
        if self._table is None:
            self._table = load_pair_table(self.folder)
        return self._table

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        table = self.table()
        positions = rank_positions(batch["id"], self.rank, self.world, self.batch_size)
        index = prompt_indices(positions, len(table), self.seed)
        captions = np.asarray([table.captions[i] for i in index], dtype=object)
        return {"position": positions, "prompt": captions, "latents": _rows(table.latents, index)}


def _rows(latents: np.ndarray, index: np.ndarray) -> np.ndarray:
    """latents[index] as an in-memory float32 array (read in sorted order: a sequential scan of
    the memory map rather than random seeks, then put back in stream order)."""
    order = np.argsort(index, kind="stable")
    out = np.empty((len(index), *latents.shape[1:]), np.float32)
    out[order] = latents[index[order]]
    return out


class RankPairStream(RankPromptStream):
    """`RankPromptStream` for data-aided runs: each rank's own slice of the pair stream.

    The trainer's dataset is still `ray.data.range(rows_per_rank)` under `PROMPT_STREAM`; only the
    per-rank UDF (pairs instead of prompts) and the batch size (bounded in bytes) differ.
    """

    def __init__(self, folder: str | Path, seed: int, batch_size: int):
        super().__init__([], seed, batch_size)
        self.folder = str(folder)

    def rank_udf(self, rank: int, world: int) -> RankPairs:
        return RankPairs(self.folder, self.seed, rank, world, self.batch_size)

    def rows_per_batch(self) -> int:
        meta = json.loads((Path(self.folder) / "meta.json").read_text())
        row_bytes = 4 * int(np.prod(meta["latent_shape"]))
        return int(np.clip(_BATCH_BYTES // row_bytes, 1, 4096))


class PairCycle:
    """Single-process pairs in the stream's order: `take(n)` serves positions position..+n-1."""

    def __init__(self, table: PairTable | str | Path, seed: int = 0, position: int = 0):
        self.table = table if isinstance(table, PairTable) else load_pair_table(table)
        if len(self.table) == 0:
            raise ValueError(f"the pair table {self.table.folder} is empty")
        self.seed, self.position = seed, position

    def take(self, n: int) -> tuple[list[str], torch.Tensor]:
        """(captions, latents (n, *latent_shape) float32) of the next n positions."""
        index = prompt_indices(np.arange(self.position, self.position + n), len(self.table), self.seed)
        self.position += n
        captions = [self.table.captions[i] for i in index]
        return captions, torch.from_numpy(_rows(self.table.latents, index))
