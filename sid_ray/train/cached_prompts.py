"""Training from the embedding cache: which runs do, and what their workers check and read.

A data-free run with `data.embedding_cache` set trains on the cache's embeddings: the launcher
makes sure the cache matches (`ensure_embedding_cache`), streams its rows in the prompt stream's
order, and sends the workers a config with `model.load_text_encoders=false`, so no worker holds
a text encoder. Each worker then checks that its adapter tokenises to the cache's max length and
that it built no text-encoder module, and turns stream rows into `EncodedPrompts`. The cache's
held-out rows (`held_out_prompts`) are the run's evaluation prompts, and in-training evaluation
takes their embeddings from the cache (`CachedPromptEncoder`): those held-out rows of the shards
(only the "eval" rows of the shards that have any are read), and the evaluation prompts that are
not held out (the teacher's fixed set of a run without held-out prompts) from the evaluation file
the embedding stage wrote for them. Each prompt is in the cache once.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data import embedding_cache as cache
from sid_ray.data.embedding_stream import CachedConditioning, EmbeddingCycle
from sid_ray.data.storage import StoragePath
from sid_ray.models.conditioning import TensorConditioning


def uses_embedding_cache(config: RunConfig) -> bool:
    """Data-aided runs train on their shards' captions, which the cache does not hold."""
    return bool(config.data.embedding_cache) and not config.data.images


def worker_config(config: RunConfig) -> RunConfig:
    """The config the workers build from: without text encoders when the cache feeds them."""
    if not uses_embedding_cache(config):
        return config
    config = copy.deepcopy(config)
    config.model.load_text_encoders = False
    return config


def text_encoder_modules(adapter) -> list[str]:
    """Names of the text-encoder modules the adapter holds (none when built from the cache)."""
    components = getattr(adapter, "components", {})
    return [
        k for k, v in components.items() if k.startswith("text_encoder") and isinstance(v, torch.nn.Module)
    ]


def check_worker_adapter(config: RunConfig, adapter) -> None:
    """In a worker of a cached run: the adapter tokenises to the cache's max length (the driver
    checked the model: a relative model.path may not resolve from here) and holds no text encoder."""
    if not uses_embedding_cache(config):
        return
    folder = config.data.embedding_cache
    manifest = cache.read_manifest(folder)
    cache.check_max_length(manifest, adapter.text_max_length, folder)
    built = text_encoder_modules(adapter)
    if built:
        raise RuntimeError(f"training from {folder}, yet the worker built text encoders {built}")


def stream_prompts(
    config: RunConfig,
) -> Callable[[dict[str, np.ndarray]], Sequence[str] | cache.EncodedPrompts]:
    """Stream batch -> what `micro_batches` encodes: the prompt texts, or the cache's embeddings."""
    if not uses_embedding_cache(config):
        return lambda batch: batch["prompt"]
    conditioning = CachedConditioning(config.data.embedding_cache)
    return lambda batch: conditioning(
        batch["prompt"], {k: v for k, v in batch.items() if k.startswith(cache.EMB_PREFIX)}
    )


def with_absolute_cache(config: RunConfig) -> RunConfig:
    """The config with `data.embedding_cache` absolute: workers run in other folders."""
    if not config.data.embedding_cache:
        return config
    config = copy.deepcopy(config)
    config.data.embedding_cache = str(StoragePath(config.data.embedding_cache))  # a URI stays one
    return config


def cached_batches(config: RunConfig) -> Iterator[tuple[cache.EncodedPrompts, None]]:
    """The single process's global batches from a finished cache (jobs/embed.py or a Ray run
    wrote it), in the order the prompt stream serves the same prompts."""
    folder = config.data.embedding_cache
    manifest = cache.read_manifest(folder)
    if manifest is None:
        raise ConfigError(
            f"data.embedding_cache: {folder} holds no finished cache; build it with jobs/embed.py"
        )
    cache.check_model(manifest, config.model, folder)
    cycle = EmbeddingCycle(folder, seed=config.data.shuffle_seed)
    return ((cycle.take(config.train.batch_size), None) for _ in itertools.count())


def held_out_shards(folder: str) -> Iterator[StoragePath]:
    """The cache's shards that hold held-out rows (split "eval"), in the prompt list's order; a
    shard's writer records its train rows, so shards without any are skipped unopened."""
    folder = StoragePath(folder)
    manifest = cache.read_manifest(folder)
    if manifest is None or not manifest.get("eval_count"):
        return
    for shard in manifest["shards"]:
        path = folder / cache.SHARDS_DIR / shard["file"]
        info = cache.read_shard_info(path)
        if not info or info["rows"] > info["train_rows"]:
            yield path


def held_out_prompts(folder: str) -> list[str]:
    """The cache's held-out prompts (split "eval", by hash), in the prompt list's order: never
    trained on, they are the run's evaluation prompts, as `split_prompts` gives them for a run
    that encodes in the loop."""
    out = []
    for path in held_out_shards(folder):
        table = pq.read_table(
            path.path, columns=["prompt"], filters=[("split", "==", "eval")], filesystem=path.fs
        )
        out += table["prompt"].to_pylist()
    return out


def read_held_out_rows(folder: str, prompts: list[str]) -> tuple[list[str], list[dict[str, torch.Tensor]]]:
    """Those of `prompts` that are held-out rows of the cache's shards, and their embeddings (one
    {key: tensor} per shard read): only shards with held-out rows are opened, only their "eval"
    rows of `prompts` decoded, and reading stops once all are found."""
    texts: list[str] = []
    parts: list[dict[str, torch.Tensor]] = []
    remaining = set(prompts)
    shards = held_out_shards(folder) if remaining else iter(())
    for path in shards:
        wanted = [("split", "==", "eval"), ("prompt", "in", sorted(remaining))]
        found, tensors = cache.read_encoded(path, filters=wanted)
        if found:
            texts += found
            parts.append(tensors)
            remaining.difference_update(found)
        if not remaining:
            break  # the next shard's record is not even read
    return texts, parts


class CachedPromptEncoder:
    """The adapter, with `encode_prompts` answered from the cache instead of the text encoders a
    cached run's workers do not hold; every other attribute is the adapter's. The evaluation
    prompts that are held-out rows of the shards are read from there (`read_held_out_rows`), the
    others from the evaluation file named by them (`eval_set_file`), which the embedding stage
    wrote; the bytes are the encoders' output either way."""

    def __init__(self, adapter, folder: str, prompts: list[str]):
        self.adapter = adapter
        prompts = list(dict.fromkeys(prompts))
        texts, parts = read_held_out_rows(folder, prompts)
        found = set(texts)
        extra = [p for p in prompts if p not in found]  # as the embedding stage named their file
        if extra:
            path = StoragePath(folder) / cache.eval_set_file(extra)
            if not path.is_file():
                raise ConfigError(
                    f"eval: {folder} holds no embeddings of this run's {len(prompts)} evaluation "
                    f"prompts: {len(extra)} are not held-out rows of its shards, and {path.name} is "
                    "missing; the launcher encodes them when it checks the cache (jobs/embed.py with "
                    "this run's config does too), or set eval.every_kimg=0"
                )
            more, tensors = cache.read_encoded(path)
            texts += more
            parts.append(tensors)
        self.tensors = {k: torch.cat([part[k] for part in parts]) for k in parts[0]} if parts else {}
        self.row = {text: i for i, text in enumerate(texts)}
        self.null = cache.read_null(folder)

    def __getattr__(self, name: str):
        if name == "adapter":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.adapter, name)

    def encode_prompts(self, prompts) -> TensorConditioning:
        missing = [p for p in prompts if p not in self.row]
        if missing:
            raise KeyError(f"prompts not in the cache's evaluation set: {missing[:3]}")
        index = torch.tensor([self.row[p] for p in prompts], dtype=torch.long)
        return TensorConditioning({k: v[index] for k, v in self.tensors.items()}, self.null)
