"""The embedding cache's evaluation set, without Ray: what a cached run's in-training evaluation
reads instead of encoding, the shards' held-out rows and the evaluation file of the other
evaluation prompts (tests/train/test_cached_eval.py runs it end to end), and the one-line console
summary of the data counts."""

from __future__ import annotations

import json
import types

import pyarrow.parquet as pq
import pytest
import torch

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.data import embedding_cache as cache
from sid_ray.data.data_tracking import summary_line
from sid_ray.eval.generator_eval import eval_prompt_list as eval_prompts
from sid_ray.train.cached_prompts import CachedPromptEncoder
from sid_ray.train.in_training_eval import InTrainingEval

PROMPTS = ["a handwritten zero", "a handwritten one", "a handwritten two"]


def _write_eval_set(folder, prompts: list[str]) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    tensors = {"prompt_embeds": torch.randn(len(prompts), 4, 3), "pooled": torch.randn(len(prompts), 5)}
    null = {k: torch.zeros(1, *v.shape[1:]) for k, v in tensors.items()}
    cache.write_null(folder, null)
    table = cache.rows_table(["h"] * len(prompts), prompts, ["eval"] * len(prompts), tensors)
    (folder / cache.EVAL_DIR).mkdir()
    cache.write_table_atomically(table, folder / cache.eval_set_file(prompts))
    return tensors


def _config(folder, *overrides: str):
    return load_config(
        None,
        [
            "model.name=digits-flux",
            "eval.every_kimg=1",
            "model.load_text_encoders=false",
            f"data.embedding_cache={folder}",
            *overrides,
        ],
    )


def test_the_cached_encoder_answers_the_evaluation_prompts_bit_for_bit(tmp_path):
    tensors = _write_eval_set(tmp_path, PROMPTS)
    adapter = types.SimpleNamespace(device="cpu", latent_shape=(1, 2, 2))
    encoder = CachedPromptEncoder(adapter, str(tmp_path), PROMPTS)
    assert encoder.latent_shape == (1, 2, 2)  # everything else is the adapter's
    cond = encoder.encode_prompts([PROMPTS[2], PROMPTS[0], PROMPTS[2]])
    for key, value in tensors.items():
        assert torch.equal(cond.tensors[key], value[[2, 0, 2]]), key
        assert torch.equal(cond.null[key], torch.zeros(1, *value.shape[1:]))
    with pytest.raises(KeyError, match="not in the cache's evaluation set"):
        encoder.encode_prompts(["a handwritten nine"])
    with pytest.raises(ConfigError, match="holds no embeddings of this run's 2 evaluation prompts"):
        CachedPromptEncoder(adapter, str(tmp_path), PROMPTS[:2])


def _write_shards(folder, shards: dict[str, tuple[list[str], list[str]]]) -> dict[str, dict]:
    """Shards {file: (prompts, splits)} and a manifest listing them; each prompt's tensors."""
    torch.manual_seed(1)
    (folder / cache.SHARDS_DIR).mkdir()
    rows = {}
    for file, (prompts, splits) in shards.items():
        n = len(prompts)
        tensors = {"prompt_embeds": torch.randn(n, 4, 3), "pooled": torch.randn(n, 5)}
        info = {"rows": n, "train_rows": splits.count("train"), "truncated": {}}
        table = cache.rows_table(["h"] * n, prompts, splits, tensors, info)
        cache.write_table_atomically(table, folder / cache.SHARDS_DIR / file)
        rows.update({p: {k: v[i] for k, v in tensors.items()} for i, p in enumerate(prompts)})
    held = sum(s.count("eval") for _, s in shards.values())
    listed = [{"file": f, "rows": len(p)} for f, (p, _) in shards.items()]
    (folder / cache.MANIFEST).write_text(json.dumps({"eval_count": held, "shards": listed}))
    return rows


def test_the_held_out_rows_come_from_the_shards_the_other_prompts_from_the_file(tmp_path, monkeypatch):
    rows = _write_shards(
        tmp_path,
        {
            "shard-0.parquet": (["t0", "t1"], ["train", "train"]),  # no held-out row: not opened
            "shard-1.parquet": (["t2", "h0", "h1"], ["train", "eval", "eval"]),
            "shard-2.parquet": (["h2"], ["eval"]),
        },
    )
    extra = _write_eval_set(tmp_path, PROMPTS)  # the evaluation prompts not held out
    rows.update({p: {k: v[i] for k, v in extra.items()} for i, p in enumerate(PROMPTS)})
    reads, read_table = [], pq.read_table
    monkeypatch.setattr(
        pq, "read_table", lambda path, **kw: reads.append((path, kw)) or read_table(path, **kw)
    )

    evaluation = ["h1", PROMPTS[0], "h0", PROMPTS[1], PROMPTS[2]]
    encoder = CachedPromptEncoder(types.SimpleNamespace(), str(tmp_path), evaluation)
    asked = ["h0", PROMPTS[2], "h1", "h0"]
    cond = encoder.encode_prompts(asked)
    for key in extra:
        assert torch.equal(cond.tensors[key], torch.stack([rows[p][key] for p in asked])), key
    with pytest.raises(KeyError, match="not in the cache's evaluation set"):
        encoder.encode_prompts(["t2"])

    def shards_read() -> list[str]:
        read = [(path.rsplit("/", 1)[1], kw) for path, kw in reads if f"/{cache.SHARDS_DIR}/" in path]
        assert all(("split", "==", "eval") in kw["filters"] for _, kw in read)  # no training row decoded
        reads.clear()
        return [name for name, _ in read]

    assert shards_read() == ["shard-1.parquet", "shard-2.parquet"]  # not shard-0: no held-out row
    # held-out prompts alone need no file, and reading stops once they are found
    held = CachedPromptEncoder(None, str(tmp_path), ["h1", "h0"]).encode_prompts(["h0", "h1"])
    for key in extra:
        assert torch.equal(held.tensors[key], torch.stack([rows["h0"][key], rows["h1"][key]])), key
    assert shards_read() == ["shard-1.parquet"]
    # a training prompt is neither a held-out row nor in the evaluation file: refused
    with pytest.raises(ConfigError, match=f"{tmp_path} holds no embeddings of this run's 3 evaluation"):
        CachedPromptEncoder(None, str(tmp_path), ["h0", "t2", PROMPTS[0]])


def test_in_training_evaluation_of_a_cached_run_reads_the_cache(tmp_path):
    config = _config(tmp_path, "eval.num_samples=30")
    prompts = eval_prompts(config, [])
    assert len(prompts) == 10 and prompts[0] == "a handwritten zero"  # the digits' class prompts, once each
    adapter = types.SimpleNamespace(device="cpu")
    with pytest.raises(ConfigError, match="evaluation prompts"):
        InTrainingEval.create(config, adapter, [], torch.float32)  # not encoded yet
    _write_eval_set(tmp_path, prompts)
    evaluator = InTrainingEval.create(config, adapter, [], torch.float32)
    assert isinstance(evaluator.adapter, CachedPromptEncoder) and len(evaluator.prompts) == 30
    # held-out prompts are the evaluation set when there are any
    assert eval_prompts(config, ["b", "a", "b"]) == ["b", "a"]


def test_a_run_without_text_encoders_or_cache_cannot_evaluate_in_training(tmp_path):
    config = _config(tmp_path, "data.embedding_cache=")
    with pytest.raises(ConfigError, match="load_text_encoders=false builds no text encoder"):
        InTrainingEval.create(config, types.SimpleNamespace(device="cpu"), [], torch.float32)


def test_the_data_counts_fit_one_console_line():
    counts = {
        "read": {"files": 1, "lines": 11, "kept": 10, "duplicate": 1},
        "truncated": {},
        "cache": {"count": 10},
    }
    assert summary_line(counts) == "data: read files 1, lines 11, kept 10, duplicate 1; cache count 10"
    assert summary_line({}) == "data: no counts"
