"""The per-rank prompt stream: the single process's order, split by rank, and prompt files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sid_ray.config.schema import ConfigError, DataConfig
from sid_ray.data.prompts import RankPrompts, prompt_indices, rank_positions, read_prompts
from sid_ray.train.prompt_cycle import PromptCycle

PROMPTS = [f"prompt {i}" for i in range(7)]  # 7 does not divide the batch: epochs straddle


def test_stream_order_is_the_single_process_order():
    cycle = PromptCycle(PROMPTS, seed=3)
    expected = cycle.take(50)
    got = [PROMPTS[i] for i in prompt_indices(np.arange(50), len(PROMPTS), 3)]
    assert got == expected


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_split_each_global_batch_into_contiguous_slices(world):
    batch, iterations = 8, 5
    cycle = PromptCycle(PROMPTS, seed=1)
    per_rank = batch // world
    for_rank = {
        r: RankPrompts(PROMPTS, 1, r, world, batch)({"id": np.arange(iterations * per_rank)})["prompt"]
        for r in range(world)
    }
    for i in range(iterations):
        single = cycle.take(batch)  # what run_local feeds iteration i
        joined = [p for r in range(world) for p in for_rank[r][i * per_rank : (i + 1) * per_rank]]
        assert joined == single
    # positions are disjoint and cover every row exactly once
    all_positions = np.concatenate(
        [rank_positions(np.arange(iterations * per_rank), r, world, batch) for r in range(world)]
    )
    assert sorted(all_positions.tolist()) == list(range(iterations * batch))


@pytest.mark.ray
def test_read_prompt_files(tmp_path, ray_local):
    (tmp_path / "p.txt").write_text("a cat\n  a dog \na cat\n")
    assert read_prompts(DataConfig(prompts=str(tmp_path / "p.txt"))) == ["a cat", "a dog"]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ["x", "y"]))
    assert read_prompts(DataConfig(prompts=str(tmp_path / "p.jsonl"), prompt_column="text")) == ["x", "y"]
    pq.write_table(pa.table({"prompt": ["u", "v", "u"]}), tmp_path / "p.parquet")
    assert read_prompts(DataConfig(prompts=str(tmp_path / "p.parquet"))) == ["u", "v"]
    with pytest.raises(ConfigError, match="prompt_column"):
        read_prompts(DataConfig(prompts=str(tmp_path / "p.parquet"), prompt_column="caption"))


def test_prompt_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data.prompts"):
        read_prompts(DataConfig(prompts=str(tmp_path / "missing.txt")))
    (tmp_path / "p.csv").write_text("a\n")
    with pytest.raises(ConfigError, match="data.prompts"):
        read_prompts(DataConfig(prompts=str(tmp_path / "p.csv")))
    assert read_prompts(DataConfig(), default=["mode 1"]) == ["mode 1"]
