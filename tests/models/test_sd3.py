"""SD3 / SD3.5 adapter against stock diffusers, on a tiny SD3.5 saved to disk and loaded back."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.loading import ModelLoadError
from sid_ray.models.registry import build_adapter
from sid_ray.models.sampling import euler_sample, scheduler_schedule, sid_sample
from sid_ray.models.sd3 import VARIANTS, SD3Adapter, sd3_timestep
from sid_ray.models.tiny.sd3 import write_tiny_sd3
from sid_ray.sid.flow import x0_from_velocity
from tests.models.stock_pipeline_run import run_stock_pipeline

RESOLUTION = 64  # latents (16, 8, 8)
PROMPTS = ["A cat sleeping on a sunny windowsill", "a red bus"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")


@pytest.fixture(scope="module")
def adapter(folder) -> SD3Adapter:
    return build_adapter(ModelConfig(name="sd3-tiny", path=str(folder), resolution=RESOLUTION))


@pytest.fixture(scope="module")
def pipe(folder) -> StableDiffusion3Pipeline:
    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_registry_names_and_variants():
    for name in ("sd35-large", "sd35-medium", "sd3-medium", "sd3-tiny"):
        assert VARIANTS[name].name == name
    assert VARIANTS["sd35-large"].default_path == "stabilityai/stable-diffusion-3.5-large"
    assert VARIANTS["sd3-tiny"].default_path == ""


def test_adapter_from_folder(adapter):
    assert isinstance(adapter, SD3Adapter)
    assert adapter.latent_shape == (16, RESOLUTION // 8, RESOLUTION // 8)
    assert not any(p.requires_grad for p in adapter.teacher.parameters())


def test_prompt_encoding_is_the_pipelines(adapter, pipe):
    cond = adapter.encode_prompts(PROMPTS)
    embeds, neg, pooled, neg_pooled = pipe.encode_prompt(
        PROMPTS, None, None, do_classifier_free_guidance=True
    )
    # 77 CLIP tokens + 256 T5 tokens, T5 width; pooled CLIP-L (16) + CLIP-G (24)
    assert cond.tensors["prompt_embeds"].shape == (2, 77 + 256, 48)
    assert cond.tensors["pooled_prompt_embeds"].shape == (2, 40)
    # (the two loads pick their attention kernels independently: equal up to float rounding)
    close = dict(rtol=0, atol=2e-5)
    torch.testing.assert_close(cond.tensors["prompt_embeds"], embeds, **close)
    torch.testing.assert_close(cond.tensors["pooled_prompt_embeds"], pooled, **close)
    # the null condition is the pipeline's default negative prompt ""
    uncond = cond.unconditional().tensors
    torch.testing.assert_close(uncond["prompt_embeds"], neg, **close)
    torch.testing.assert_close(uncond["pooled_prompt_embeds"], neg_pooled, **close)
    assert (embeds[0] - neg[0]).abs().max() > 1e-3  # prompts are not all alike


def test_timestep_scale_and_x0_prediction(adapter):
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn((2, *adapter.latent_shape), generator=g)
    t = torch.tensor([0.3, 0.8])
    cond = adapter.encode_prompts(PROMPTS)
    transformer = adapter.transformer
    seen: list[torch.Tensor] = []
    hook = transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["timestep"]), with_kwargs=True
    )
    try:
        v = adapter.teacher.velocity(x_t, t, cond)
    finally:
        hook.remove()
    torch.testing.assert_close(seen[0], torch.tensor([300.0, 800.0]), rtol=0, atol=1e-4)

    def direct(timestep: torch.Tensor) -> torch.Tensor:
        return transformer(
            hidden_states=x_t,
            timestep=timestep,
            encoder_hidden_states=cond.tensors["prompt_embeds"],
            pooled_projections=cond.tensors["pooled_prompt_embeds"],
            return_dict=False,
        )[0]

    v_direct = direct(1000 * t)
    torch.testing.assert_close(v, v_direct, rtol=0, atol=1e-6)
    assert (v - direct(t)).abs().max() > 1e-2  # the scale matters, so the check above can fail
    x0_hat = x0_from_velocity(x_t, t, v)
    torch.testing.assert_close(x0_hat, x_t - t.view(2, 1, 1, 1) * v_direct, rtol=0, atol=1e-6)
    # a scalar t is broadcast to the batch
    assert sd3_timestep(torch.tensor(0.5), 3).tolist() == [500.0] * 3


@pytest.mark.parametrize("guidance", [4.5, 1.0])
def test_euler_sampler_reproduces_pipeline(adapter, pipe, guidance):
    steps, seed = 4, 123
    cond = adapter.encode_prompts(PROMPTS)
    times, sigmas = scheduler_schedule(adapter.scheduler, steps)
    z = torch.randn((len(PROMPTS), *adapter.latent_shape), generator=torch.Generator().manual_seed(seed))
    ours = euler_sample(adapter.teacher, z, cond, sigmas, times, guidance=guidance)
    ref = pipe(
        PROMPTS,
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=RESOLUTION,
        width=RESOLUTION,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
    ).images
    assert ref.shape == ours.shape
    assert (ours - ref).abs().max().item() <= 1e-4
    assert (ref - z).abs().max() > 0.1  # the sampler moved; the comparison is not of two copies of z
    if guidance != 1.0:
        unguided = euler_sample(adapter.teacher, z, cond, sigmas, times, guidance=1.0)
        assert (unguided - ref).abs().max() > 1e-2  # CFG (and so the null condition) changed the result


def test_decode_matches_pipeline(adapter, pipe):
    seed = 5
    kwargs = dict(num_inference_steps=2, height=RESOLUTION, width=RESOLUTION, guidance_scale=1.0)
    latents = pipe(PROMPTS[:1], generator=torch.Generator().manual_seed(seed), output_type="latent", **kwargs)
    images = pipe(PROMPTS[:1], generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs)
    decoded = adapter.decode(latents.images)
    assert decoded.shape == (1, 3, RESOLUTION, RESOLUTION)
    torch.testing.assert_close(decoded, images.images, rtol=0, atol=1e-5)
    encoded = adapter.encode_images(decoded)
    assert encoded.shape == (1, *adapter.latent_shape)


def test_trainable_copy_starts_as_teacher(adapter):
    generator = adapter.make_trainable_copy("generator")
    cond = adapter.encode_prompts(PROMPTS[:1])
    x_t = torch.randn((1, *adapter.latent_shape), generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.6])
    torch.testing.assert_close(generator.velocity(x_t, t, cond), adapter.teacher.velocity(x_t, t, cond))
    assert all(p.requires_grad for p in generator.parameters())


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_adapter(ModelConfig(name="sd3-tiny", path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="model.path"):
        build_adapter(ModelConfig(name="sd3-tiny", path=""))


@pytest.mark.parametrize("part", ["text_encoder_3", "tokenizer_2", "vae"])
def test_missing_part_is_a_clear_error(folder, tmp_path, part):
    broken = shutil.copytree(folder, tmp_path / "broken")
    shutil.rmtree(broken / part)
    with pytest.raises(ModelLoadError, match=f"no {part}/"):
        build_adapter(ModelConfig(name="sd3-tiny", path=str(broken)))


def test_missing_weights_are_a_clear_error(folder, tmp_path):
    broken = shutil.copytree(folder, tmp_path / "broken")
    for weights in (broken / "transformer").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelLoadError, match="no safetensors weights in transformer/"):
        build_adapter(ModelConfig(name="sd3-tiny", path=str(broken)))


def test_adapter_for_another_familys_name_is_a_config_error():
    with pytest.raises(ConfigError, match="model.name: 'sana-600m' is not a SD3Adapter teacher; use one of"):
        SD3Adapter(ModelConfig(name="sana-600m"))


def test_resolution_must_be_whole_tokens(folder):
    # VAE 8x and patch 2: StableDiffusion3Pipeline needs multiples of 16; checked before loading
    with pytest.raises(ConfigError, match=r"model.resolution: sd3-tiny needs a multiple of 16 .*got 72"):
        build_adapter(ModelConfig(name="sd3-tiny", path=str(folder), resolution=72))


@pytest.mark.parametrize(
    "name, billions",
    [("sd35-large", 8.06), ("sd35-medium", 2.24), ("sd3-medium", 2.03)],
)
def test_full_size_configs_build(name, billions):
    # on the meta device: the real architecture's shapes, no memory
    with torch.device("meta"):
        model = SD3Transformer2DModel(**VARIANTS[name].transformer_config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)


def perturbed_generator(adapter: SD3Adapter, seed: int = 7):
    """G = a copy of T nudged off it, so an export of T instead of G would be caught."""
    generator = adapter.make_trainable_copy("generator")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return generator


# time shift 0.5: G trained at t = 1, .6, .33, .14 (sid.rollout_time_shift); this pipeline reaches
# those times only with the README's sigmas (sid_ray.models.export), which the call here passes
@pytest.mark.parametrize("time_shift", [1.0, 0.5])
def test_export_samples_with_stock_pipeline(adapter, tmp_path, time_shift):
    steps, seed, prompt = 4, 11, PROMPTS[0]
    generator = perturbed_generator(adapter)
    folder = adapter.export(generator, tmp_path / "exported", num_steps=steps, time_shift=time_shift)
    readme = (folder / "README.md").read_text()  # this pipeline's step noise: the global generator
    assert "torch.manual_seed(0)" in readme and "generator=" not in readme
    call = {}
    if time_shift != 1.0:
        assert "sigmas=[1.0, 0.75, 0.5, 0.25]" in readme and "t = 1, 0.6, 0.3333, 0.1429" in readme, readme
        call["sigmas"] = [1.0, 0.75, 0.5, 0.25]
    stock = run_stock_pipeline(
        folder, "StableDiffusion3Pipeline", prompt, steps, RESOLUTION, seed, tmp_path, call_arguments=call
    )

    cond = adapter.encode_prompts([prompt])
    z = torch.randn((1, *adapter.latent_shape), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # the pipeline's scheduler draws each step's fresh noise from the global RNG
    ours = sid_sample(generator, z, cond, num_steps=steps, guidance=1.0, time_shift=time_shift)
    images = adapter.decode(ours)
    assert (ours - stock["latent"]).abs().max().item() <= 1e-4
    assert (images - stock["pt"]).abs().max().item() <= 1e-4
    torch.manual_seed(seed)
    teacher_x0 = sid_sample(adapter.teacher, z, cond, num_steps=steps, guidance=1.0, time_shift=time_shift)
    assert (teacher_x0 - stock["latent"]).abs().max() > 1e-2  # the folder holds G, not T
    if time_shift != 1.0:  # and G at the unshifted times is another sample: the times reached the call
        torch.manual_seed(seed)
        unshifted = sid_sample(generator, z, cond, num_steps=steps, guidance=1.0)
        assert (unshifted - stock["latent"]).abs().max() > 1e-2
