"""Loading pipeline folders: the requested parts, in the requested dtype, or ONE clear error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.loading import ModelLoadError, load_components
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
