"""`model.init=random`: the released architecture with random weights, tiny parts of the real widths."""

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.models.registry import build_adapter


def random_config(name: str, resolution: int, *overrides: str):
    return load_config(
        None,
        [
            f"model.name={name}",
            "model.init=random",
            "model.dtype=bfloat16",
            f"model.resolution={resolution}",
            *overrides,
        ],
    )


@pytest.mark.parametrize("name, resolution", [("flux-tiny", 32), ("sd3-tiny", 32)])
def test_random_teacher_runs_and_is_the_same_on_every_build(name, resolution):
    config = random_config(name, resolution, "model.lora.mode=shared_base", "model.lora.rank=4")
    adapter, again = build_adapter(config), build_adapter(config)
    assert adapter.transformer.dtype == torch.bfloat16
    # every rank builds the same weights (the shared base is replicated, not broadcast)
    for p, q in zip(adapter.transformer.parameters(), again.transformer.parameters(), strict=True):
        assert torch.equal(p, q)
    cond = adapter.encode_prompts(["a red fox", "a city at night"])
    x = torch.randn(2, *adapter.latent_shape, dtype=torch.bfloat16)
    v = adapter.teacher.guided_velocity(x, torch.rand(2), cond, 3.5)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_full_size_flux_dev_has_the_released_widths():
    # the transformer on the meta device: the real architecture and the widths its tiny encoders must produce
    with torch.device("meta"):
        adapter = build_adapter(random_config("flux-dev", 512))
    cond = adapter.encode_prompts(["a red fox"])  # the tiny parts are real, on the CPU
    assert sum(p.numel() for p in adapter.transformer.parameters()) / 1e9 == pytest.approx(11.9, abs=0.05)
    assert cond.tensors["prompt_embeds"].shape == (1, 512, 4096)  # T5-XXL, 512 tokens
    assert cond.tensors["pooled_prompt_embeds"].shape == (1, 768)  # CLIP-L pooled
    assert adapter.latent_shape == (1024, 64)  # 512 px: 32 x 32 packed tokens of 16 x 2 x 2


def test_full_size_sd35_large_has_the_released_widths():
    with torch.device("meta"):
        adapter = build_adapter(random_config("sd35-large", 1024))
    cond = adapter.encode_prompts(["a red fox"])  # the tiny parts are real, on the CPU
    assert sum(p.numel() for p in adapter.transformer.parameters()) / 1e9 == pytest.approx(8.06, abs=0.01)
    assert cond.tensors["prompt_embeds"].shape == (1, 77 + 256, 4096)  # CLIP tokens then T5's
    assert cond.tensors["pooled_prompt_embeds"].shape == (1, 768 + 1280)


def test_a_family_without_random_parts_says_so():
    with pytest.raises(ConfigError, match="model.init: random weights are not available for sana-600m"):
        build_adapter(random_config("sana-600m", 1024))
    with pytest.raises(ConfigError, match="model.init: sana-tiny has no released architecture"):
        build_adapter(random_config("sana-tiny", 32))


def test_every_process_builds_the_same_tiny_parts_and_the_lean_adapter_encodes_as_the_full_one():
    """An embedding actor (the lean text-encoder adapter, its transformer weightless) and a
    training worker (the whole random teacher) build their tiny text encoders in different
    random states; a cached embedding must still equal what the worker encodes."""
    from sid_ray.models.registry import adapter_class

    config = random_config("flux-tiny", 32)
    torch.manual_seed(123)  # a worker's seed: the tiny parts must not depend on it
    full = build_adapter(config)
    torch.manual_seed(456)
    lean = adapter_class("flux-tiny").text_encoder(config.model)
    assert all(p.is_meta for p in lean.transformer.parameters())
    prompts = ["a red fox", "a city at night"]
    for key, value in full.encode_prompts(prompts).tensors.items():
        assert torch.equal(lean.encode_prompts(prompts).tensors[key], value), key
