"""The digits teacher: registry name, folder, FLUX adapter facts, deterministic build."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.registry import build_adapter
from sid_ray.toys.digits import SHIPPED_FOLDER, DigitsFluxAdapter, digits_teacher_folder
from sid_ray.toys.digits_data import DIGITS_RESOLUTION, load_digit_images
from sid_ray.toys.digits_teacher import DigitsTeacherRecipe, build_digits_teacher

QUICK = DigitsTeacherRecipe(vae_steps=3, steps=3, warmup_steps=1)


@pytest.fixture(scope="module")
def quick_folder(tmp_path_factory):
    return build_digits_teacher(tmp_path_factory.mktemp("digits") / "teacher", QUICK, log=lambda _: None)


def test_registry_builds_the_digits_adapter_on_a_folder(quick_folder) -> None:
    adapter = build_adapter(
        ModelConfig(name="digits-flux", path=str(quick_folder), resolution=DIGITS_RESOLUTION)
    )
    assert isinstance(adapter, DigitsFluxAdapter)
    assert adapter.latent_shape == (16, 16)  # 8x8x4 latents packed 2x2
    cond = adapter.encode_prompts(["a handwritten seven", "a handwritten one"])
    emb = cond.tensors["prompt_embeds"]
    assert not torch.allclose(emb[0], emb[1])  # the frozen random encoders tell prompts apart
    x = torch.randn(2, *adapter.latent_shape)
    t = torch.tensor([0.3, 0.9])
    v = adapter.teacher.velocity(x, t, cond)
    assert v.shape == x.shape
    # no guidance embedding: scale 2 is two-pass CFG, v_u + 2 (v_c - v_u)
    v_u = adapter.teacher.velocity(x, t, cond.unconditional())
    assert torch.allclose(adapter.teacher.guided_velocity(x, t, cond, 2.0), v_u + 2 * (v - v_u), atol=1e-5)
    images = adapter.decode(x)
    assert images.shape == (2, 3, 16, 16)
    assert adapter.digit_of("a handwritten seven") == 7


def test_vae_latents_are_normalised(quick_folder) -> None:
    adapter = DigitsFluxAdapter(ModelConfig(name="digits-flux", path=str(quick_folder), resolution=16))
    images, _ = load_digit_images()
    z = adapter.encode_images(images)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


def test_wrong_resolution_is_a_config_error(quick_folder) -> None:
    with pytest.raises(ConfigError, match="model.resolution=16"):
        DigitsFluxAdapter(ModelConfig(name="digits-flux", path=str(quick_folder), resolution=512))


def test_shipped_folder_is_what_an_empty_path_loads() -> None:
    if not (SHIPPED_FOLDER / "model_index.json").is_file():
        pytest.skip("no shipped teacher in this checkout (it would be built on first use)")
    assert digits_teacher_folder(build_if_missing=False) == SHIPPED_FOLDER
    adapter = build_adapter(ModelConfig(name="digits-flux", resolution=16))
    assert adapter.config.path == str(SHIPPED_FOLDER)
    assert sum(p.numel() for p in adapter.transformer.parameters()) < 500_000


@pytest.mark.slow
def test_build_is_deterministic(tmp_path, quick_folder) -> None:
    again = build_digits_teacher(tmp_path / "again", QUICK, log=lambda _: None)
    for part in ("transformer", "vae"):
        a = load_file(next((quick_folder / part).glob("*.safetensors")))
        b = load_file(next((again / part).glob("*.safetensors")))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    other = build_digits_teacher(tmp_path / "other", dataclasses.replace(QUICK, seed=1), log=lambda _: None)
    a = load_file(next((quick_folder / "transformer").glob("*.safetensors")))
    c = load_file(next((other / "transformer").glob("*.safetensors")))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_recipe_overrides_are_typed_like_the_recipe_fields() -> None:
    from scripts.train_digits_teacher import recipe_overrides

    parsed = recipe_overrides(["num_attention_heads=8", "lr=5e-4", "vae_channels=8,16"])
    assert parsed == {"num_attention_heads": 8, "lr": 5e-4, "vae_channels": (8, 16)}
    assert dataclasses.replace(DigitsTeacherRecipe(), **parsed).num_attention_heads == 8
    with pytest.raises(SystemExit, match="num_heads"):
        recipe_overrides(["num_heads=8"])
    with pytest.raises(SystemExit, match=f"steps takes a value like {DigitsTeacherRecipe().steps}"):
        recipe_overrides(["steps=many"])
