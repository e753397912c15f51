"""The embedding cache's evaluation set, without Ray: what a cached run's in-training evaluation
reads instead of encoding (tests/train/test_cached_eval.py runs it end to end), and the one-line
console summary of the data counts."""

from __future__ import annotations

import types

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
