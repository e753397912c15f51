"""Prompt sources of every format, broken lines included, read with Ray Data on CPU."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sid_ray.config.schema import ConfigError, DataConfig
from sid_ray.data.prompt_sources import (
    is_eval_prompt,
    prompt_hash,
    read_prompt_set,
    source_files,
    split_prompts,
)
from sid_ray.data.prompts import read_prompts


def write_sources(folder):
    """One file of each format, with each kind of bad row; returns the expected clean prompts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_bytes(b"  a red cat \n\xff\xfe broken\n\na dog\na red cat\n")
    (folder / "b.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"prompt": "a house"}),
                "{not json",
                json.dumps({"other": "x"}),
                json.dumps({"prompt": 7}),
            ]
        )
        + "\n"
    )
    (folder / "c.json").write_text(json.dumps([{"prompt": "a boat"}, {"prompt": None}]))
    pq.write_table(pa.table({"prompt": ["a tree", None, "a dog"], "n": [1, 2, 3]}), folder / "d.parquet")
    (folder / "e.txt").write_bytes(b"")
    (folder / "f.jsonl").write_text(json.dumps({"prompt": ""}) + "\n")  # the empty prompt: kept
    return ["a red cat", "a dog", "a house", "a boat", "a tree", ""]


@pytest.mark.ray
def test_every_format_is_read_in_order_and_bad_rows_are_counted(tmp_path, ray_local):
    expected = write_sources(tmp_path / "p")
    got = read_prompt_set(DataConfig(prompts=str(tmp_path / "p")))
    assert got.prompts == expected
    counts = got.counts
    assert counts["files"] == 6 and counts["kept"] == 6
    assert counts["not_utf8"] == 1 and counts["empty_file"] == 1 and counts["blank_line"] == 1
    assert counts["bad_json"] == 1 and counts["not_text"] == 1
    assert counts["missing_field"] == 3  # jsonl without the key, json null, parquet null
    assert counts["duplicate"] == 2  # "a red cat" in a.txt, "a dog" in d.parquet
    assert "dropped" in got.summary()
    lines = []  # the run's prompt list (the launcher's read) logs what it dropped
    assert read_prompts(DataConfig(prompts=str(tmp_path / "p")), log=lines.append) == expected
    assert len(lines) == 1 and "not_utf8" in lines[0]


@pytest.mark.ray
def test_globs_lists_and_file_uris_and_filters(tmp_path, ray_local):
    write_sources(tmp_path / "p")
    both = f"{tmp_path}/p/*.txt; file://{tmp_path}/p/d.parquet"
    data = DataConfig(prompts=both, min_prompt_chars=1, max_prompt_chars=5, dedupe_prompts=False)
    got = read_prompt_set(data)
    assert got.prompts == ["a dog", "a dog"]  # "a red cat", "a tree"... too long
    assert got.counts["too_long"] == 3 and got.counts["blank_line"] == 1
    assert "duplicate" not in got.counts
    uri = read_prompt_set(DataConfig(prompts=f"file://{tmp_path}/p/*.parquet"))
    assert uri.prompts == ["a tree", "a dog"]


@pytest.mark.ray
def test_sources_that_cannot_be_used_are_refused_naming_them(tmp_path, ray_local):
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "c.parquet")
    with pytest.raises(ConfigError, match=r"c\.parquet has no column 'prompt'.*caption"):
        read_prompt_set(DataConfig(prompts=str(tmp_path / "c.parquet")))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bad.jsonl").write_text('{"other": 1}\n')
    for name in ("empty.txt", "bad.jsonl"):
        with pytest.raises(ConfigError, match=f"{name} yields no usable prompt"):
            read_prompt_set(DataConfig(prompts=str(tmp_path / name)))


def test_missing_sources_and_formats_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="missing.txt names no prompt file"):
        source_files(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="names no prompt file"):
        source_files(str(tmp_path / "*.jsonl"))
    (tmp_path / "p.csv").write_text("a\n")
    with pytest.raises(ConfigError, match="must end in"):
        source_files(str(tmp_path / "p.csv"))


def test_held_out_split_is_a_function_of_the_text():
    prompts = [f"prompt number {i}" for i in range(2000)]
    train, held = split_prompts(prompts, 0.1)
    assert 150 < len(held) < 250 and len(train) + len(held) == 2000
    assert not set(train) & set(held)
    # the same prompt is on the same side whatever list it is in
    assert split_prompts(prompts[::-1], 0.1)[1] == held[::-1]
    assert all(is_eval_prompt(p, 0.1) for p in held) and not is_eval_prompt(held[0], 0.0)
    assert len(prompt_hash("x")) == 32 and prompt_hash("x") != prompt_hash("y")
