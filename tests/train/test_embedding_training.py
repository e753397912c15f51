"""Training from the embedding cache: bit-identical losses to encoding in the loop, on the tiny
FLUX and SD3 teachers, and workers that build no text encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.data.embedding_build import build_embedding_cache
from sid_ray.models.registry import build_adapter
from sid_ray.train.cached_prompts import text_encoder_modules, worker_config

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red fox", "a city at night", "two boats", "a bowl of soup", "a snowy hill", ""]
LOSSES = ("loss/fake", "loss/generator")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    from sid_ray.models.tiny.flux import build_tiny_flux
    from sid_ray.models.tiny.sd3 import write_tiny_sd3

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("teachers")
    return {"flux": build_tiny_flux(folder / "flux"), "sd3": write_tiny_sd3(folder / "sd3")}


def tiny_config(tmp_path, teachers, family: str, *overrides: str):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(f'{{"prompt": "{p}"}}' for p in PROMPTS) + "\n")
    return load_config(
        ROOT / "configs" / f"{family}_tiny.yaml",
        [
            f"model.path={teachers[family]}",
            f"output_dir={tmp_path / 'runs'}",
            f"data.prompts={prompts}",
            "data.shuffle_seed=3",
            "train.keep_checkpoints=0",
            "train.export_pipeline=false",
            *overrides,
        ],
    )


def cached(config, folder):
    return dataclasses.replace(config, data=dataclasses.replace(config.data, embedding_cache=str(folder)))


def test_workers_of_a_cached_run_build_no_text_encoder(tmp_path, teachers):
    config = cached(tiny_config(tmp_path, teachers, "flux"), tmp_path / "cache")
    full = build_adapter(config)
    assert text_encoder_modules(full) == ["text_encoder", "text_encoder_2"]
    lean = build_adapter(worker_config(config))
    assert text_encoder_modules(lean) == []
    encoders = [m for c in lean.components.values() if isinstance(c, torch.nn.Module) for m in c.modules()]
    assert not any("TextModel" in type(m).__name__ or "T5" in type(m).__name__ for m in encoders)
    assert lean.max_sequence_length == full.max_sequence_length  # the tokenizers are kept
    with pytest.raises(RuntimeError, match="load_text_encoders"):
        lean.encode_prompts(["a red fox"])
    # an export still writes a complete pipeline: the encoders load then
    exported = lean.export_components()
    assert isinstance(exported["text_encoder_2"], torch.nn.Module) and "text_encoder_2" not in lean.components


@pytest.mark.ray
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_single_process_losses_are_bit_identical_from_the_cache(tmp_path, teachers, family, ray_cluster):
    from sid_ray.train.local import run_local

    config = tiny_config(tmp_path, teachers, family, "train.total_kimg=0.012", "train.num_workers=1")
    from_cache = cached(config, tmp_path / "cache")
    build_embedding_cache(from_cache, log=print)
    from sid_ray.data.prompts import read_prompts

    encoded = run_local(config, read_prompts(config.data), log=None, write_config=False)
    replayed = run_local(from_cache, log=None, write_config=False)
    assert len(encoded.history) == 3
    for a, b in zip(encoded.history, replayed.history, strict=True):
        assert [a[k] for k in LOSSES] == [b[k] for k in LOSSES]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_workers_train_bit_identically_from_the_cache(tmp_path, teachers, ray_cluster):
    from sid_ray.train.launcher import launch

    config = tiny_config(tmp_path, teachers, "flux", "name=in-loop")
    in_loop = launch(config, show_progress=False)
    # the launcher builds the missing cache itself; each worker checks it built no text encoder
    from_cache = dataclasses.replace(cached(config, tmp_path / "cache"), name="from-cache")
    replayed = launch(from_cache, show_progress=False)
    assert (tmp_path / "cache" / "manifest.json").is_file()
    assert len(in_loop.rows) == len(replayed.rows) == 2
    for a, b in zip(in_loop.rows, replayed.rows, strict=True):
        assert [a[k] for k in LOSSES] == [b[k] for k in LOSSES]
