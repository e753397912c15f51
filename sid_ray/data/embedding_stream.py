"""Training rows from the embedding cache, in the prompt stream's exact order.

The cache's training rows (split "train", in the prompt list's order) play the prompt list's
role in `sid_ray.data.prompts`: global position p is row `prompt_indices([p], N, seed)`, rank r
takes `rank_positions(...)`. With the same prompts and seed, a run from the cache therefore
sees at every position the prompt that encoding in the loop would see, and resumes the same way.
Ray workers get rows {"position", "prompt", "emb:<key>": (n, nbytes) uint8} from
`RankEmbeddingStream` (`get_dataset_shard(PROMPT_STREAM)` as always) and turn them into
conditioning with `CachedConditioning`; the single process uses `EmbeddingCycle`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sid_ray.data import embedding_cache as cache
from sid_ray.data.prompts import RankPromptStream, prompt_indices, rank_positions
from sid_ray.data.storage import StoragePath
from sid_ray.models.conditioning import TensorConditioning

_BATCH_BYTES = 64 * 2**20  # embeddings per Ray Data batch of the stream (blocks stay small)


class CachedTable:
    """The training rows of a cache folder: their prompts (in memory) and their embeddings,
    read from the shards' row groups on demand."""

    def __init__(self, folder: str | Path):
        self.folder = StoragePath(folder)
        self.manifest = cache.read_manifest(self.folder)
        if self.manifest is None:
            raise FileNotFoundError(f"{self.folder} has no {cache.MANIFEST}: not a finished embedding cache")
        self.layout = self.manifest["layout"]
        self.columns = [cache.EMB_PREFIX + k for k in self.layout]
        self.paths = [self.folder / cache.SHARDS_DIR / s["file"] for s in self.manifest["shards"]]
        shards, rows, prompts = [], [], []
        for number, path in enumerate(self.paths):
            table = pq.read_table(path.path, columns=["prompt", "split"], filesystem=path.fs)
            train = np.flatnonzero(np.asarray(table["split"].to_pylist()) == "train")
            shards.append(np.full(len(train), number, np.int64))
            rows.append(train)
            texts = table["prompt"].to_pylist()
            prompts += [texts[i] for i in train]
        self.shard, self.row = np.concatenate(shards), np.concatenate(rows)
        self.prompts = prompts
        self._files: dict[int, pq.ParquetFile] = {}

    def __len__(self) -> int:
        return len(self.prompts)

    def byte_rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """{emb:<key>: (n, nbytes) uint8} of training rows `index`, in that order."""
        index = np.asarray(index, np.int64)
        parts: dict[str, list] = {c: [None] * len(index) for c in self.columns}
        for shard in np.unique(self.shard[index]):
            where = np.flatnonzero(self.shard[index] == shard)
            table = self._read_rows(int(shard), self.row[index[where]])
            for column in self.columns:
                values = table[column].to_pylist()
                for slot, value in zip(where, values, strict=True):
                    parts[column][slot] = value
        return {c: cache.byte_rows(pa.array(v, pa.binary())) for c, v in parts.items()}

    def _read_rows(self, shard: int, rows: np.ndarray) -> pa.Table:
        """Rows `rows` of one shard: only the row groups holding them are read."""
        if shard not in self._files:
            path = self.paths[shard]
            self._files[shard] = pq.ParquetFile(path.fs.open_input_file(path.path))
        file = self._files[shard]
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        group_of = np.searchsorted(starts, rows, side="right") - 1  # the row group of each row
        groups = np.unique(group_of)
        table = file.read_row_groups(groups.tolist(), columns=self.columns)
        read_sizes = [sizes[g] for g in groups]
        read_start = dict(zip(groups.tolist(), np.cumsum([0, *read_sizes[:-1]]).tolist(), strict=True))
        local = [read_start[g] + r - starts[g] for r, g in zip(rows.tolist(), group_of.tolist(), strict=True)]
        return table.take(pa.array(local, pa.int64()))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}  # open files stay with their process


class CachedConditioning:
    """Stream rows -> `EncodedPrompts` (the null condition read once from the cache)."""

    def __init__(self, folder: str | Path):
        self.folder = StoragePath(folder)
        self.layout = cache.read_manifest(self.folder)["layout"]
        self.null = cache.read_null(self.folder)

    def __call__(self, texts, rows: dict[str, np.ndarray]) -> cache.EncodedPrompts:
        tensors = cache.decode_rows(self.layout, rows)
        return cache.EncodedPrompts([str(t) for t in texts], TensorConditioning(tensors, self.null))


class RankEmbeddings:
    """Ray Data UDF: local row ids of one rank -> positions, prompts and embedding bytes.

    Pickled with the folder only; each process opens the table on its first batch."""

    def __init__(self, folder: str | Path, seed: int, rank: int, world: int, batch_size: int):
        self.folder, self.seed = str(folder), seed
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self._table: CachedTable | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_table": None}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._table is None:
            self._table = CachedTable(self.folder)
        table = self._table
        positions = rank_positions(batch["id"], self.rank, self.world, self.batch_size)
        index = prompt_indices(positions, len(table), self.seed)
        prompts = np.asarray([table.prompts[i] for i in index], dtype=object)
        return {"position": positions, "prompt": prompts, **table.byte_rows(index)}


class RankEmbeddingStream(RankPromptStream):
    """`RankPromptStream` serving cached embeddings: same positions, rows bounded in bytes."""

    def __init__(self, folder: str | Path, seed: int, batch_size: int):
        super().__init__([], seed, batch_size)
        self.folder = str(folder)

    def rank_udf(self, rank: int, world: int) -> RankEmbeddings:
        return RankEmbeddings(self.folder, self.seed, rank, world, self.batch_size)

    def rows_per_batch(self) -> int:
        return int(np.clip(_BATCH_BYTES // row_nbytes(cache.read_manifest(self.folder)), 1, 4096))


def row_nbytes(manifest: dict) -> int:
    """Bytes of one row's embeddings."""
    sizes = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
    return sum(int(np.prod(s["shape"])) * sizes.get(s["dtype"], 4) for s in manifest["layout"].values())


class EmbeddingCycle:
    """Single-process rows in the stream's order: `take(n)` serves positions position..+n-1."""

    def __init__(self, folder: str | Path, seed: int = 0, position: int = 0):
        self.table, self.conditioning = CachedTable(folder), CachedConditioning(folder)
        self.seed, self.position = seed, position

    def take(self, n: int) -> cache.EncodedPrompts:
        index = prompt_indices(np.arange(self.position, self.position + n), len(self.table), self.seed)
        self.position += n
        return self.conditioning([self.table.prompts[i] for i in index], self.table.byte_rows(index))
