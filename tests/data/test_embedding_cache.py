"""The embedding job on the tiny FLUX teacher: what it writes (each prompt once, the held-out rows
serving in-training evaluation), resuming, refusing another model, and the training rows it serves
in the prompt stream's order."""

from __future__ import annotations

import re

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.data import embedding_cache as cache
from sid_ray.data.embedding_build import build_embedding_cache, ensure_embedding_cache
from sid_ray.data.embedding_stream import CachedConditioning, CachedTable, EmbeddingCycle, RankEmbeddings
from sid_ray.data.prompt_sources import split_prompts
from sid_ray.data.prompts import RankPrompts
from sid_ray.eval.generator_eval import eval_prompt_list
from sid_ray.models.registry import build_adapter
from sid_ray.train.cached_prompts import CachedPromptEncoder, held_out_prompts
from sid_ray.train.prompt_cycle import PromptCycle

PROMPTS = [f"a photo of thing number {i}" for i in range(10)] + ["x" * 200]  # the last: over CLIP's 77
EVALUATES_3 = ("eval.every_kimg=1", "eval.num_samples=3")  # three of the teacher's fixed prompts


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory):
    from sid_ray.models.tiny.flux import build_tiny_flux

    torch.manual_seed(0)
    return build_tiny_flux(tmp_path_factory.mktemp("flux") / "pipeline")


def embed_config(tmp_path, teacher, *overrides):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS + [PROMPTS[0]]) + "\n")  # one duplicate
    return load_config(
        None,
        [
            "model.name=flux-tiny",
            f"model.path={teacher}",
            "model.resolution=16",
            f"data.prompts={prompts}",
            f"data.embedding_cache={tmp_path / 'cache'}",
            "data.embedding_shard_size=4",
            "data.embed_batch_size=3",
            "data.eval_prompt_fraction=0.25",
            *overrides,
        ],
    )


def logged():
    lines = []
    return lines, lines.append


@pytest.mark.ray
def test_cache_holds_the_encoders_bits_and_resumes(tmp_path, flux_folder, ray_local):
    config = embed_config(tmp_path, flux_folder, "eval.every_kimg=1")  # with the evaluation set
    manifest = build_embedding_cache(config, log=print, eval_prompts=eval_prompt_list)
    folder = tmp_path / "cache"
    train, held = split_prompts(PROMPTS, 0.25)
    assert manifest["count"] == 11 and manifest["train_count"] == len(train) and held
    assert manifest["read_counts"]["duplicate"] == 1 and len(manifest["shards"]) == 3
    assert manifest["truncated"]["tokenizer"] == 1  # CLIP keeps 77 tokens; 200 x's exceed it
    assert manifest["model"] == "flux-tiny" and manifest["max_length"] and manifest["dtype"] == "float32"
    assert set(manifest["encoders"]) == {"text_encoder", "text_encoder_2"}

    adapter = build_adapter(config)
    table, conditioning = CachedTable(folder), CachedConditioning(folder)
    assert table.prompts == train
    encoded = conditioning(train, table.byte_rows(torch.arange(len(train)).numpy()))
    expected = adapter.encode_prompts(train)
    for key, value in expected.tensors.items():
        assert torch.equal(encoded.conditioning.tensors[key], value), key  # bit for bit
        assert torch.equal(encoded.conditioning.null[key], expected.null[key]), key
    # the held-out rows are the evaluation prompts, which a cached run's in-training evaluation
    # reads from the shards instead of encoding: the encoders' bits as well
    assert held_out_prompts(str(folder)) == held and manifest["eval_set"]["from_shards"] == len(held)
    from_cache = CachedPromptEncoder(adapter, str(folder), held).encode_prompts(held)
    for key, value in adapter.encode_prompts(held).tensors.items():
        assert torch.equal(from_cache.tensors[key], value), key

    # resume: a lost shard is re-encoded, the others are kept as written
    shards = sorted((folder / cache.SHARDS_DIR).glob("*.parquet"))
    kept = {p.name: p.stat().st_mtime_ns for p in shards[1:]}
    shards[0].unlink()
    (folder / cache.MANIFEST).unlink()
    lines, log = logged()
    again = build_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)
    assert "2 already written; encoding 1" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in shards[1:]} == kept
    assert again["prompts_sha"] == manifest["prompts_sha"] and again["truncated"] == manifest["truncated"]

    lines, log = logged()
    assert (
        ensure_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)["created"] == again["created"]
    )
    assert "cache hit" in lines[0]


@pytest.mark.ray
def test_each_prompt_is_encoded_once_the_held_out_ones_serving_evaluation(tmp_path, flux_folder, ray_local):
    config = embed_config(tmp_path, flux_folder, "eval.every_kimg=1")
    lines, log = logged()
    manifest = build_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)
    folder = tmp_path / "cache"
    train, held = split_prompts(PROMPTS, 0.25)
    assert held and eval_prompt_list(config, held) == held  # the evaluation set: the held-out rows
    # every prompt once: the shards' rows, and no evaluation file of the held-out prompts again
    encoded = int(re.search(r"\] (\d+) prompt\(s\) encoded", lines[-1]).group(1))
    assert encoded == len(PROMPTS)  # 11, not 11 + the 2 held-out prompts again
    assert manifest["encoded"] == manifest["count"] == encoded
    assert manifest["eval_set"] == {
        "prompts": len(held),
        "from_shards": len(held),
        "file": None,
        "file_rows": 0,
    }
    assert not list((folder / cache.EVAL_DIR).glob("*.parquet"))
    # in-training evaluation reads the shards' held-out rows: the encoders' bits
    adapter = build_adapter(config)
    encoder = CachedPromptEncoder(adapter, str(folder), held)
    from_cache = encoder.encode_prompts(held[::-1])
    for key, value in adapter.encode_prompts(held[::-1]).tensors.items():
        assert torch.equal(from_cache.tensors[key], value), key
    # a training prompt is neither a held-out row nor in an evaluation file: refused, naming the folder
    with pytest.raises(ConfigError, match=f"{folder} holds no embeddings of this run's {len(held) + 1} "):
        CachedPromptEncoder(adapter, str(folder), [*held, train[0]])
    lines, log = logged()
    ensure_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)
    assert "cache hit" in lines[0]  # no evaluation file needed


@pytest.mark.ray
def test_cache_of_another_model_is_refused_naming_both(tmp_path, flux_folder, ray_local):
    config = embed_config(tmp_path, flux_folder, "data.embedding_shard_size=64")
    build_embedding_cache(config, log=print, eval_prompts=eval_prompt_list)
    other = embed_config(tmp_path, flux_folder, "model.name=sd3-tiny", "model.resolution=64")
    with pytest.raises(ConfigError, match=r"built for flux-tiny at .*but this run's model is sd3-tiny"):
        ensure_embedding_cache(other, log=print)
    bf16 = embed_config(tmp_path, flux_folder, "model.dtype=bfloat16")
    with pytest.raises(ConfigError, match=r"float32.*bfloat16"):
        build_embedding_cache(bf16, log=print)
    manifest = cache.read_manifest(tmp_path / "cache")
    with pytest.raises(ConfigError, match="max length 999"):
        cache.check_max_length({**manifest, "max_length": 999}, manifest["max_length"], "cache")

    # changed prompts: the stale cache is re-encoded, the model check still passes
    (tmp_path / "prompts.txt").write_text("a new prompt\n")
    lines, log = logged()
    assert ensure_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)["count"] == 1
    assert "other prompts" in lines[0]


@pytest.mark.ray
def test_cached_rows_follow_the_prompt_stream(tmp_path, flux_folder, ray_local):
    config = embed_config(tmp_path, flux_folder, "data.eval_prompt_fraction=0", *EVALUATES_3)
    manifest = build_embedding_cache(config, log=print, eval_prompts=eval_prompt_list)
    folder = tmp_path / "cache"
    # nothing held out: the evaluation set is the teacher's fixed prompts, in their own file
    fixed = eval_prompt_list(config, [])
    assert len(fixed) == 3 and not set(fixed) & set(PROMPTS)
    file = cache.eval_set_file(fixed)
    assert manifest["encoded"] == len(PROMPTS) + 3
    assert manifest["eval_set"] == {"prompts": 3, "from_shards": 0, "file": file, "file_rows": 3}
    adapter = build_adapter(config)
    from_cache = CachedPromptEncoder(adapter, str(folder), fixed).encode_prompts(fixed)
    for key, value in adapter.encode_prompts(fixed).tensors.items():
        assert torch.equal(from_cache.tensors[key], value), key
    # a run that evaluates in training needs its evaluation file: only that is encoded again
    (folder / file).unlink()
    lines, log = logged()
    assert ensure_embedding_cache(config, log=log, eval_prompts=eval_prompt_list)["encoded"] == 3
    assert (
        "not its evaluation prompts" in lines[0]
        and "encoding 0 shard(s) and 1 evaluation file(s)" in lines[1]
    )
    assert (folder / file).is_file()
    cycle, reference = EmbeddingCycle(folder, seed=5), PromptCycle(PROMPTS, seed=5)
    assert cycle.take(7).texts == reference.take(7)
    assert cycle.take(9).texts == reference.take(9)  # across an epoch boundary: resumes exactly
    world, batch = 2, 4
    ids = {"id": torch.arange(6).numpy()}
    for rank in range(world):
        rows = RankEmbeddings(folder, 5, rank, world, batch)(ids)
        texts = RankPrompts(PROMPTS, 5, rank, world, batch)(ids)
        assert list(rows["prompt"]) == list(texts["prompt"])
        assert (rows["position"] == texts["position"]).all()


@pytest.mark.parametrize("name, builder", [("flux-tiny", "build_tiny_flux"), ("sd3-tiny", "write_tiny_sd3")])
def test_the_embedding_actor_loads_the_text_encoders_alone(tmp_path, name, builder):
    import importlib

    from sid_ray.config.schema import ModelConfig
    from sid_ray.models.registry import adapter_class

    module = importlib.import_module(f"sid_ray.models.tiny.{name.split('-')[0]}")
    torch.manual_seed(0)
    folder = getattr(module, builder)(tmp_path / name)
    model = ModelConfig(name=name, path=str(folder), resolution=16 if name == "flux-tiny" else 64)
    lean = adapter_class(name).text_encoder(model)
    assert all(p.is_meta for p in lean.transformer.parameters()) and lean.vae is None
    full = build_adapter(model)
    lean_cond, full_cond = lean.encode_prompts(PROMPTS[:3]), full.encode_prompts(PROMPTS[:3])
    for key, value in full_cond.tensors.items():
        assert torch.equal(lean_cond.tensors[key], value) and torch.equal(
            lean_cond.null[key], full_cond.null[key]
        )
