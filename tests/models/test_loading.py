"""Loading pipeline folders: the requested parts, in the requested dtype, or ONE clear error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import filter_repo_objects

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.loading import ModelLoadError, hub_patterns, load_components, resolve_folder
from sid_ray.models.registry import build_adapter


@pytest.fixture
def flux_copy(tiny_flux_folder, tmp_path):
    return shutil.copytree(tiny_flux_folder, tmp_path / "teacher")


def test_loads_requested_parts_in_dtype(tiny_flux_folder):
    parts = load_components(tiny_flux_folder, ["transformer", "tokenizer_2", "scheduler"], torch.bfloat16)
    assert set(parts) == {"transformer", "tokenizer_2", "scheduler"}
    transformer = parts["transformer"]
    assert type(transformer).__name__ == "FluxTransformer2DModel"
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in transformer.parameters())
    assert not transformer.training
    assert type(parts["scheduler"]).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError) as err:
        load_components(missing, ["transformer"])
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)
    assert "expected a diffusers pipeline folder" in str(err.value)


def test_missing_subfolder_names_folder_and_part(flux_copy):
    shutil.rmtree(flux_copy / "transformer")
    with pytest.raises(ModelLoadError) as err:
        load_components(flux_copy, ["transformer", "vae"])
    message = str(err.value)
    assert message.startswith(f"teacher folder {flux_copy} has no transformer/ subfolder")
    assert (
        "expected a diffusers pipeline folder: model_index.json, transformer/, vae/, text_encoder*/"
        in message
    )
    assert err.value.__cause__ is None  # our message, not a stack from inside diffusers


def test_every_problem_in_one_message(flux_copy):
    shutil.rmtree(flux_copy / "text_encoder_2")
    weights = next((flux_copy / "vae").glob("*.safetensors"))
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelLoadError) as err:
        load_components(flux_copy, ["vae", "text_encoder_2", "tokenizer"])
    message = str(err.value)
    assert "no text_encoder_2/ subfolder" in message
    assert "no safetensors weights in vae/" in message and "diffusion_pytorch_model.bin" in message


def test_missing_model_index_and_foreign_library(flux_copy):
    index = json.loads((flux_copy / "model_index.json").read_text())
    index["transformer"] = ["my_package", "EvilTransformer"]
    (flux_copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="only \\['diffusers', 'transformers'\\] are loaded"):
        load_components(flux_copy, ["transformer"])
    (flux_copy / "model_index.json").unlink()
    with pytest.raises(ModelLoadError, match="has no model_index.json"):
        load_components(flux_copy, ["transformer"])


def test_adapter_reports_loading_errors_as_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_adapter(ModelConfig(name="flux-dev", path=str(tmp_path / "missing")))


def test_hub_patterns_fetch_configs_and_safetensors_of_the_requested_parts(tiny_flux_folder):
    # huggingface_hub's own filter, on the tiny folder's files plus the pickled copies and parts a
    # hub repository often also holds
    files = [str(p.relative_to(tiny_flux_folder)) for p in tiny_flux_folder.rglob("*") if p.is_file()]
    extra = ["transformer/diffusion_pytorch_model.bin", "vae/model.ckpt", "flux1-dev.safetensors"]
    kept = set(
        filter_repo_objects([*files, *extra], allow_patterns=hub_patterns(["transformer", "tokenizer_2"]))
    )
    assert "model_index.json" in kept
    assert {f for f in files if f.startswith(("transformer/", "tokenizer_2/"))} <= kept
    assert all(f == "model_index.json" or f.startswith(("transformer/", "tokenizer_2/")) for f in kept)
    assert not kept & set(extra)


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """An empty hub cache in offline mode (no request leaves the machine)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_hub_cache(cache, repo_id: str, folder) -> str:
    """Lay `folder` out as huggingface_hub caches a download of `repo_id` at main; the snapshot path."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return str(repo / "snapshots" / revision)


def test_hub_id_resolves_from_the_cache_and_loads(tiny_flux_folder, offline_hub_cache):
    snapshot = put_in_hub_cache(offline_hub_cache, "tiny-org/tiny-flux", tiny_flux_folder)
    assert str(resolve_folder("tiny-org/tiny-flux", ["transformer"])) == snapshot
    adapter = build_adapter(ModelConfig(name="flux-tiny", path="tiny-org/tiny-flux", resolution=16))
    assert adapter.components["transformer"].config._name_or_path.startswith(snapshot)
    # the same weights as the local folder
    local = load_components(tiny_flux_folder, ["transformer"])["transformer"]
    theirs = local.state_dict()
    ours = adapter.transformer.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_unknown_hub_id_offline_is_one_clear_error(offline_hub_cache):
    with pytest.raises(ModelLoadError) as err:
        load_components("tiny-org/no-such-model", ["transformer"])
    message = str(err.value)
    assert message.startswith("teacher tiny-org/no-such-model is neither a local folder nor a downloadable")
    assert f"HF_HUB_OFFLINE is set and the hub cache {offline_hub_cache} does not hold it" in message
