"""SANA adapter against stock diffusers, on a tiny SANA saved to disk and loaded back."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from diffusers import SanaPipeline, SanaTransformer2DModel

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.loading import ModelLoadError
from sid_ray.models.registry import build_adapter
from sid_ray.models.sampling import euler_sample, scheduler_schedule, sid_sample
from sid_ray.models.sana import COMPLEX_HUMAN_INSTRUCTION, VARIANTS, SanaAdapter
from sid_ray.models.tiny.sana import write_tiny_sana
from sid_ray.sid.flow import x0_from_velocity
from tests.models.stock_pipeline_run import run_stock_pipeline

RESOLUTION = 128  # latents (32, 4, 4)
PROMPTS = ["A cat sleeping on a sunny windowsill", "a red bus"]
NO_BINNING = {"use_resolution_binning": False}  # tiny sizes are in no aspect-ratio bin


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_sana(tmp_path_factory.mktemp("sana") / "tiny-sana")


@pytest.fixture(scope="module")
def adapter(folder) -> SanaAdapter:
    return build_adapter(ModelConfig(name="sana-tiny", path=str(folder), resolution=RESOLUTION))


@pytest.fixture(scope="module")
def pipe(folder) -> SanaPipeline:
    pipe = SanaPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_registry_names_and_variants():
    for name in ("sana-600m", "sana-1600m", "sana-tiny"):
        assert VARIANTS[name].name == name
        assert VARIANTS[name].timestep_multiplier == 1000.0
        assert VARIANTS[name].max_sequence_length == 300
    assert VARIANTS["sana-600m"].default_path == "Efficient-Large-Model/Sana_600M_1024px_diffusers"
    # the instruction is the pipeline's default, not a copy that could drift from it
    assert COMPLEX_HUMAN_INSTRUCTION[-1] == "User Prompt: " and len(COMPLEX_HUMAN_INSTRUCTION) == 8


def test_adapter_from_folder(adapter):
    assert isinstance(adapter, SanaAdapter)
    assert adapter.latent_shape == (32, RESOLUTION // 32, RESOLUTION // 32)
    assert adapter.vae_scale_factor == 32
    assert not any(p.requires_grad for p in adapter.teacher.parameters())


def test_prompt_encoding_is_the_pipelines(adapter, pipe):
    cond = adapter.encode_prompts(PROMPTS)
    embeds, mask, neg, neg_mask = pipe.encode_prompt(
        PROMPTS, do_classifier_free_guidance=True, complex_human_instruction=list(COMPLEX_HUMAN_INSTRUCTION)
    )
    assert cond.tensors["prompt_embeds"].shape == (2, 300, 32)
    torch.testing.assert_close(cond.tensors["prompt_embeds"], embeds, rtol=0, atol=2e-5)
    assert torch.equal(cond.tensors["prompt_attention_mask"], mask)
    uncond = cond.unconditional().tensors
    torch.testing.assert_close(uncond["prompt_embeds"], neg, rtol=0, atol=2e-5)
    assert torch.equal(uncond["prompt_attention_mask"], neg_mask)
    # the null condition is encoded without the instruction: "" is <bos> alone, whereas "" through
    # the positive path keeps <bos> and the instruction's last token
    assert uncond["prompt_attention_mask"][0].sum() == 1
    assert adapter.encode_text([""])["prompt_attention_mask"].sum() == 2


def velocity_timesteps(adapter: SanaAdapter, x_t, t, cond) -> tuple[torch.Tensor, torch.Tensor]:
    seen: list[torch.Tensor] = []
    transformer = adapter.transformer
    hook = transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["timestep"]), with_kwargs=True
    )
    try:
        v = adapter.teacher.velocity(x_t, t, cond)
    finally:
        hook.remove()
    return v, seen[0]


def test_timestep_scale_and_x0_prediction(adapter):
    x_t = torch.randn((2, *adapter.latent_shape), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.3, 0.8])
    cond = adapter.encode_prompts(PROMPTS)
    v, timestep = velocity_timesteps(adapter, x_t, t, cond)
    torch.testing.assert_close(timestep, torch.tensor([300.0, 800.0]), rtol=0, atol=1e-4)

    def direct(timestep: torch.Tensor) -> torch.Tensor:
        return adapter.transformer(
            x_t,
            encoder_hidden_states=cond.tensors["prompt_embeds"],
            encoder_attention_mask=cond.tensors["prompt_attention_mask"],
            timestep=timestep,
            return_dict=False,
        )[0]

    v_direct = direct(1000 * t)
    torch.testing.assert_close(v, v_direct, rtol=0, atol=1e-6)
    assert (v - direct(t)).abs().max() > 1e-2  # the scale matters, so the check above can fail
    torch.testing.assert_close(
        x0_from_velocity(x_t, t, v), x_t - t.view(2, 1, 1, 1) * v_direct, rtol=0, atol=1e-6
    )


def test_timestep_multiplier_is_per_variant(folder):
    # SANA-Sprint-style checkpoints take t itself; the variant says so, the velocity follows
    sprint_like = dataclasses.replace(VARIANTS["sana-tiny"], timestep_multiplier=1.0)
    adapter = SanaAdapter(ModelConfig(name="sana-tiny", path=str(folder), resolution=RESOLUTION), sprint_like)
    x_t = torch.randn((1, *adapter.latent_shape), generator=torch.Generator().manual_seed(3))
    _, timestep = velocity_timesteps(adapter, x_t, torch.tensor([0.25]), adapter.encode_prompts(PROMPTS[:1]))
    assert timestep.tolist() == [0.25]


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
        **NO_BINNING,
    ).images
    assert ref.shape == ours.shape
    assert (ours - ref).abs().max().item() <= 1e-4
    assert (ref - z).abs().max() > 0.1  # the sampler moved; the comparison is not of two copies of z
    if guidance != 1.0:
        unguided = euler_sample(adapter.teacher, z, cond, sigmas, times, guidance=1.0)
        assert (unguided - ref).abs().max() > 1e-2  # CFG (and so the null condition) changed the result


def test_decode_matches_pipeline(adapter, pipe):
    seed = 5
    kwargs = dict(
        num_inference_steps=2, height=RESOLUTION, width=RESOLUTION, guidance_scale=1.0, **NO_BINNING
    )
    latents = pipe(PROMPTS[:1], generator=torch.Generator().manual_seed(seed), output_type="latent", **kwargs)
    images = pipe(PROMPTS[:1], generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs)
    decoded = adapter.decode(latents.images)
    assert decoded.shape == (1, 3, RESOLUTION, RESOLUTION)
    torch.testing.assert_close(decoded, images.images, rtol=0, atol=1e-5)
    encoded = adapter.encode_images(decoded)
    assert encoded.shape == (1, *adapter.latent_shape)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_adapter(ModelConfig(name="sana-tiny", path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="model.path"):
        build_adapter(ModelConfig(name="sana-tiny", path=""))


@pytest.mark.parametrize("part", ["text_encoder", "tokenizer", "vae"])
def test_missing_part_is_a_clear_error(folder, tmp_path, part):
    broken = shutil.copytree(folder, tmp_path / "broken")
    shutil.rmtree(broken / part)
    with pytest.raises(ModelLoadError, match=f"no {part}/"):
        build_adapter(ModelConfig(name="sana-tiny", path=str(broken)))


@pytest.mark.parametrize("name, billions", [("sana-600m", 0.59), ("sana-1600m", 1.60)])
def test_full_size_configs_build(name, billions):
    with torch.device("meta"):
        model = SanaTransformer2DModel(**VARIANTS[name].transformer_config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)


def test_export_samples_with_stock_pipeline(adapter, tmp_path):
    steps, seed, prompt = 4, 11, PROMPTS[0]
    generator = adapter.make_trainable_copy("generator")
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # G = T nudged off it, so an export of T instead of G would be caught
        for p in generator.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    folder = adapter.export(generator, tmp_path / "exported", num_steps=steps)
    # the README seeds the way SanaPipeline draws its noise: from the call's generator
    readme = (folder / "README.md").read_text()
    assert "generator = torch.Generator().manual_seed(0)" in readme
    call = (
        f"num_inference_steps=4, generator=generator, height={RESOLUTION}, width={RESOLUTION}, "
        f"max_sequence_length={adapter.text_max_length}, guidance_scale=1.0, use_resolution_binning=False)"
    )
    assert call in readme
    assert "global generator" not in readme and "torch.manual_seed" not in readme
    stock = run_stock_pipeline(folder, "SanaPipeline", prompt, steps, RESOLUTION, seed, tmp_path)

    cond = adapter.encode_prompts([prompt])
    # SanaPipeline draws the initial latents and then each step's fresh noise from its generator
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn((1, *adapter.latent_shape), generator=rng)
    ours = sid_sample(generator, z, cond, num_steps=steps, guidance=1.0, generator=rng)
    assert (ours - stock["latent"]).abs().max().item() <= 1e-4
    assert (adapter.decode(ours) - stock["pt"]).abs().max().item() <= 1e-4
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn((1, *adapter.latent_shape), generator=rng)
    teacher_x0 = sid_sample(adapter.teacher, z, cond, num_steps=steps, guidance=1.0, generator=rng)
    assert (teacher_x0 - stock["latent"]).abs().max() > 1e-2  # the folder holds G, not T
