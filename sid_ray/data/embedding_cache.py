"""The embedding cache on disk: prompt embeddings encoded once, read by training instead of text.

A cache folder (`data.embedding_cache`, written by `sid_ray.data.embedding_build`; a local or shared
folder, or s3:// gs:// through pyarrow, `sid_ray.data.storage`):

    manifest.json                  model and encoder identity, max length, dtype, counts, shards,
                                   where the evaluation prompts are (`eval_set`)
    null.parquet                   the null condition (the empty prompt's embeddings), one row
    shards/shard-00000-<h>.parquet rows of (prompt_hash, prompt, split, emb:<key> ...)
    eval/eval-<h>.parquet          the in-training evaluation's prompts that are not held-out rows
                                   of the shards (`eval_set_file`), same rows; absent when none

Each `emb:<key>` column holds one row's tensor of the adapter's `encode_prompts(...).tensors[key]`
as raw bytes, in the dtype the encoders produced: the bytes are the tensor, so training from the
cache sees bit for bit what encoding in the loop gives. Every shard's parquet metadata carries the
layout ({key: shape, dtype}), so a shard is readable without the manifest. A shard's name carries
a hash of its prompts: a resumed or repeated build skips shards that exist, whatever run wrote them.
Rows keep the prompt list's order; `split` is "train" or "eval" (`prompt_sources.is_eval_prompt`).
Each prompt is encoded once. The run's evaluation set (its distinct prompts: its held-out prompts,
or the teacher's fixed set when it has none) is read from the shards' "eval" rows where they hold
it; the rest of it, usually the whole fixed set or nothing, is in an evaluation file named by
those prompts, so runs that evaluate differently share a cache. The manifest's `eval_set` says
{"prompts": n, "from_shards": rows read from the shards, "file": file or null, "file_rows": m}.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.data.prompt_sources import prompt_hash
from sid_ray.data.storage import StoragePath, is_uri
from sid_ray.models.conditioning import TensorConditioning

CACHE_VERSION = 1
MANIFEST = "manifest.json"
NULL_FILE = "null.parquet"
SHARDS_DIR = "shards"
EVAL_DIR = "eval"
EMB_PREFIX = "emb:"
_LAYOUT_KEY = b"sid_ray.layout"
_INFO_KEY = b"sid_ray.shard"
_ROW_GROUP_BYTES = 16 * 2**20  # rows per row group: a training read fetches little beyond its rows

# Tensor layout of one row: {key: {"shape": [...], "dtype": "float32"}}
Layout = dict[str, dict]


@dataclass
class EncodedPrompts:
    """A batch of prompts with their conditioning already computed (read from the cache).

    Training's `micro_batches` uses `conditioning` as it is instead of encoding `texts`."""

    texts: list[str]
    conditioning: TensorConditioning

    def __len__(self) -> int:
        return len(self.texts)


def model_identity(model: ModelConfig) -> dict:
    """What of the model section decides the embeddings (a local path made absolute)."""
    path = model.path
    if path and "://" not in path and Path(path).expanduser().exists():
        path = str(Path(path).expanduser().resolve())
    return {"model": model.name, "model_path": path, "dtype": model.dtype, "init": model.init}


def tensor_layout(tensors: dict[str, torch.Tensor]) -> Layout:
    return {
        k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in tensors.items()
    }


def _row_bytes(tensor: torch.Tensor) -> list[bytes]:
    """(B, ...) tensor -> B byte strings of its rows (any dtype, bf16 included: no numpy cast)."""
    flat = tensor.detach().cpu().contiguous().reshape(tensor.shape[0], -1)
    return [bytes(r) for r in flat.view(torch.uint8).numpy()]


def rows_table(
    hashes: list[str],
    prompts: list[str],
    splits: list[str],
    tensors: dict[str, torch.Tensor],
    info: dict | None = None,
) -> pa.Table:
    """One shard's rows as a parquet table; the layout and `info` (what encoding it counted) in
    its schema metadata."""
    columns = {
        "prompt_hash": pa.array(hashes, pa.string()),
        "prompt": pa.array(prompts, pa.string()),
        "split": pa.array(splits, pa.string()),
    }
    for key, tensor in tensors.items():
        columns[EMB_PREFIX + key] = pa.array(_row_bytes(tensor), pa.binary())
    table = pa.table(columns)
    metadata = {_LAYOUT_KEY: json.dumps(tensor_layout(tensors)), _INFO_KEY: json.dumps(info or {})}
    return table.replace_schema_metadata({k: v.encode() for k, v in metadata.items()})


def write_table_atomically(table: pa.Table, path: StoragePath | str | Path) -> None:
    """A killed job leaves no half shard that a resume would take as done: on a disk, write then
    rename; in object storage an object exists only once its upload completed."""
    path = StoragePath(path)
    row_bytes = sum(len(table[c][0].as_py()) for c in table.column_names if c.startswith(EMB_PREFIX))
    target = path if is_uri(path.uri) else path.with_name(f".{path.name}.{os.getpid()}.partial")
    rows = max(1, _ROW_GROUP_BYTES // max(row_bytes, 1))
    pq.write_table(table, target.path, row_group_size=rows, filesystem=target.fs)
    if target is not path:
        target.replace(path)


def read_layout(path: StoragePath | str | Path) -> Layout:
    path = StoragePath(path)
    return json.loads(pq.read_schema(path.path, filesystem=path.fs).metadata[_LAYOUT_KEY])


def read_shard_info(path: StoragePath | str | Path) -> dict:
    """What the shard's writer recorded: {"rows", "train_rows", "truncated": {tokenizer: n}}."""
    path = StoragePath(path)
    return json.loads(pq.read_schema(path.path, filesystem=path.fs).metadata.get(_INFO_KEY, b"{}"))


def decode_rows(layout: Layout, columns: dict[str, list[bytes] | np.ndarray]) -> dict[str, torch.Tensor]:
    """`emb:<key>` byte rows (bytes objects or a (n, nbytes) uint8 array) -> {key: (n, ...) tensor}."""
    out = {}
    for key, spec in layout.items():
        rows = columns[EMB_PREFIX + key]
        dtype = getattr(torch, spec["dtype"])
        if len(rows) == 0:  # a filtered read that kept no row
            out[key] = torch.empty(0, *spec["shape"], dtype=dtype)
            continue
        data = np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else _join(rows)
        flat = torch.from_numpy(data.reshape(-1).copy()).view(dtype)
        out[key] = flat.reshape(len(rows), *spec["shape"])
    return out


def _join(rows: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(rows), dtype=np.uint8)


def byte_rows(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A binary column of equal-length rows -> (n, nbytes) uint8 array (Ray Data carries these)."""
    rows = column.to_pylist()
    return _join(rows).reshape(len(rows), -1) if rows else np.zeros((0, 0), np.uint8)


def read_manifest(folder: StoragePath | str | Path) -> dict | None:
    path = StoragePath(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def check_model(manifest: dict, model: ModelConfig, folder: str | Path) -> None:
    """Refuse a cache built for another model, naming both."""
    built, wanted = {k: manifest.get(k) for k in model_identity(model)}, model_identity(model)
    if built != wanted:
        raise ConfigError(
            f"data.embedding_cache: {folder} was built for {_describe(built)}, but this run's "
            f"model is {_describe(wanted)}; point data.embedding_cache at another folder or "
            "delete it to re-encode"
        )


def check_max_length(manifest: dict, max_length: int | None, folder: str | Path) -> None:
    """Refuse a cache whose prompts were tokenised to another length than this adapter uses."""
    if manifest.get("max_length") != max_length:
        raise ConfigError(
            f"data.embedding_cache: {folder} was built with max length {manifest.get('max_length')} "
            f"for {manifest.get('model')}, but this run's {manifest.get('model')} encodes to "
            f"{max_length}; delete it to re-encode"
        )


def _describe(identity: dict) -> str:
    path = f" at {identity['model_path']}" if identity.get("model_path") else ""
    return f"{identity['model']}{path} ({identity['dtype']}, init {identity['init']})"


def write_null(folder: StoragePath | str | Path, null: dict[str, torch.Tensor]) -> None:
    path = StoragePath(folder) / NULL_FILE
    if not path.exists():
        write_table_atomically(rows_table([""], [""], ["null"], null), path)


def read_null(folder: StoragePath | str | Path) -> dict[str, torch.Tensor]:
    path = StoragePath(folder) / NULL_FILE
    table = pq.read_table(path.path, filesystem=path.fs)
    layout = read_layout(path)
    return decode_rows(
        layout, {c: table[c].to_pylist() for c in table.column_names if c.startswith(EMB_PREFIX)}
    )


def eval_set_file(prompts: list[str]) -> str:
    """The cache-relative file of an evaluation prompt set's embeddings, named by its prompts."""
    digest = hashlib.sha256(json.dumps([prompt_hash(p) for p in prompts]).encode()).hexdigest()[:16]
    return f"{EVAL_DIR}/eval-{digest}.parquet"


def read_encoded(
    path: StoragePath | str | Path, filters: list[tuple] | None = None
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """A shard or evaluation file's prompts and their embeddings ({key: (n, ...) tensor}); with
    `filters` (pyarrow's, e.g. [("split", "==", "eval")]) only the rows they keep: row groups
    their statistics rule out are not read, the other rows are dropped before decoding."""
    path = StoragePath(path)
    layout = read_layout(path)
    names = ["prompt", *(EMB_PREFIX + key for key in layout)]
    table = pq.read_table(path.path, columns=names, filters=filters, filesystem=path.fs)
    columns = {c: table[c].to_pylist() for c in names[1:]}
    return table["prompt"].to_pylist(), decode_rows(layout, columns)
