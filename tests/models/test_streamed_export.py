"""The streamed export: G's weights go from the modules in memory to safetensors shards, with no
copy of the transformer; LoRA merged exactly as peft merges it, FLUX's guidance folded."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file
from torch import nn

from sid_ray.config.schema import LoraConfig, ModelConfig, RunConfig, SiDConfig
from sid_ray.models import export
from sid_ray.models.flux import GUIDANCE_EMBEDDER, TIMESTEP_EMBEDDER_BIAS, FluxAdapter
from sid_ray.models.lora import merged_state_tensors
from sid_ray.models.registry import build_adapter

K = 4
GUIDANCE = 3.5


def make_adapter(folder, mode: str) -> FluxAdapter:
    lora = LoraConfig(mode=mode, rank=4, alpha=8.0)  # alpha != rank: the delta's scaling matters
    model = ModelConfig(name="flux-tiny", path=str(folder), resolution=16, lora=lora)
    return build_adapter(RunConfig(model=model, sid=SiDConfig(generator_guidance=GUIDANCE)))


def moved_generator(adapter: FluxAdapter):
    """G (and in shared_base mode F's adapter on the same base) moved off T."""
    generator = adapter.make_trainable_copy("generator")
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in adapter.transformer.named_parameters():
            if "lora_" in name:  # shared_base: both adapters; lora: only T's module, which has none
                p.normal_(0, 0.05)
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return generator


def peft_fused(generator) -> nn.Module:
    """The reference merge: peft's own `fuse_lora` of G's adapter, on a copy (this test only)."""
    fused = copy.deepcopy(generator.base)
    fused.fuse_lora(adapter_names=[generator.adapter])
    fused.unload_lora()
    return fused


def exported_state(folder) -> dict[str, torch.Tensor]:
    return dict(FluxTransformer2DModel.from_pretrained(folder / "transformer").state_dict())


@pytest.mark.parametrize("mode", ["lora", "shared_base"])
def test_merged_stream_is_base_plus_peft_delta(tiny_flux_folder, mode):
    adapter = make_adapter(tiny_flux_folder, mode)
    generator = moved_generator(adapter)
    streamed = dict(merged_state_tensors(generator.base, generator.adapter))
    expected = peft_fused(generator).state_dict()
    assert list(streamed) == list(expected)  # the teacher class's names, in its order
    for key, tensor in expected.items():
        assert torch.equal(streamed[key], tensor), key


def test_shared_base_export_is_generator_only(tiny_flux_folder, tmp_path):
    """F's adapter lives on the same base: neither its delta nor any LoRA tensor is exported."""
    adapter = make_adapter(tiny_flux_folder, "shared_base")
    generator = moved_generator(adapter)
    state = exported_state(adapter.export(generator, tmp_path / "g", num_steps=K))
    assert not [k for k in state if "lora_" in k or "base_layer" in k]
    fused = peft_fused(generator)
    folded = {TIMESTEP_EMBEDDER_BIAS} | {k for k in fused.state_dict() if k.startswith(GUIDANCE_EMBEDDER)}
    for key, tensor in fused.state_dict().items():
        if key not in folded:
            assert torch.equal(state[key], tensor), key
    with torch.no_grad():  # F moves again: G's export does not change
        for name, p in adapter.transformer.named_parameters():
            if "lora_" in name and ".fake." in name:
                p.add_(1.0)
    again = exported_state(adapter.export(generator, tmp_path / "g2", num_steps=K))
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_guidance_is_folded_into_the_timestep_bias(tiny_flux_folder, tmp_path):
    adapter = make_adapter(tiny_flux_folder, "lora")
    generator = moved_generator(adapter)
    folder = adapter.export(generator, tmp_path / "export", num_steps=K)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert config["guidance_embeds"] is False and config["_class_name"] == "FluxTransformer2DModel"
    assert "_name_or_path" not in config
    index = json.loads((folder / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    state = exported_state(folder)
    assert not [k for k in state if k.startswith(GUIDANCE_EMBEDDER)]
    fused = peft_fused(generator)
    embed = fused.time_text_embed
    with torch.no_grad():  # the module's own forward, as FluxTransformer2DModel runs it
        constant = embed.guidance_embedder(embed.time_proj(torch.full((1,), GUIDANCE) * 1000))[0]
    expected = fused.state_dict()[TIMESTEP_EMBEDDER_BIAS] + constant
    torch.testing.assert_close(state[TIMESTEP_EMBEDDER_BIAS], expected, rtol=0, atol=1e-6)


def test_sharded_export_loads_in_stock_diffusers(tiny_flux_folder, tmp_path, monkeypatch):
    adapter = make_adapter(tiny_flux_folder, "full")
    generator = moved_generator(adapter)
    whole = adapter.export(generator, tmp_path / "whole", num_steps=K)
    assert (whole / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (whole / "transformer" / "diffusion_pytorch_model.safetensors.index.json").exists()

    cap = 30_000  # bytes: the tiny FLUX (~100 kB in fp32) in several shards
    saved: list[int] = []
    save_file = export.save_file

    def recording_save(tensors, path, metadata=None):
        saved.append(sum(t.numel() * t.element_size() for t in tensors.values()))
        return save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(export, "SHARD_MAX_BYTES", cap)
    monkeypatch.setattr(export, "save_file", recording_save)
    sharded = adapter.export(generator, tmp_path / "sharded", num_steps=K) / "transformer"
    index = json.loads((sharded / "diffusion_pytorch_model.safetensors.index.json").read_text())
    files = sorted({*index["weight_map"].values()})
    n = len(files)
    assert n == len(saved) >= 3 and all(size <= cap for size in saved)  # no tensor is above the cap
    assert files == [f"diffusion_pytorch_model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(p.name for p in sharded.glob("*.safetensors")) == files
    assert index["metadata"]["total_size"] == sum(saved)
    assert {k for f in files for k in load_file(sharded / f)} == set(index["weight_map"])

    reference, loaded = exported_state(whole), exported_state(sharded.parent)
    assert list(loaded) == list(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    pipe = FluxPipeline.from_pretrained(sharded.parent)  # the stock pipeline finds the shards
    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    assert all(torch.equal(pipe.transformer.state_dict()[k], reference[k]) for k in reference)


@pytest.mark.parametrize("mode", ["full", "shared_base"])
def test_export_builds_no_second_transformer(tiny_flux_folder, tmp_path, monkeypatch, mode):
    adapter = make_adapter(tiny_flux_folder, mode)
    generator = moved_generator(adapter)
    deepcopy = copy.deepcopy

    def no_module_copies(obj, *args, **kwargs):
        assert not isinstance(obj, nn.Module), f"export deep-copied a {type(obj).__name__}"
        return deepcopy(obj, *args, **kwargs)

    def no_construction(*args, **kwargs):
        raise AssertionError("export built a FluxTransformer2DModel")

    monkeypatch.setattr(copy, "deepcopy", no_module_copies)
    monkeypatch.setattr(FluxTransformer2DModel, "__init__", no_construction)
    folder = adapter.export(generator, tmp_path / "export", num_steps=K)
    monkeypatch.undo()
    assert exported_state(folder)  # and what it wrote loads
