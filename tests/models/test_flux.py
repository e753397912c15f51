"""FLUX adapter against stock FluxPipeline on a tiny folder loaded through sid_ray's loading code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from sid_ray.config.schema import ConfigError, FluxGuidanceConfig, ModelConfig, RunConfig, SiDConfig
from sid_ray.models.flux import FluxAdapter
from sid_ray.models.loading import load_components
from sid_ray.models.registry import build_adapter
from sid_ray.models.sampling import euler_sample
from sid_ray.models.tiny.flux import tiny_flux_transformer
from sid_ray.sid.flow import x0_from_velocity

PROMPTS = ["a red cat on a mat", "two dogs"]
RES = 16


def make_adapter(folder, **kwargs) -> FluxAdapter:
    return build_adapter(ModelConfig(name="flux-tiny", path=str(folder), resolution=RES, **kwargs))


def pipe_of(folder) -> FluxPipeline:
    return FluxPipeline.from_pretrained(folder, dtype=torch.float32)


def initial_noise(adapter: FluxAdapter, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same N(0, I) draw FluxPipeline.prepare_latents makes, unpacked and packed."""
    h, w = adapter.latent_grid
    c = adapter.transformer.config.in_channels // 4
    z = torch.randn((batch, c, h, w), generator=torch.Generator().manual_seed(seed))
    return z, adapter.pack_latents(z)


@pytest.mark.parametrize("guidance", [1.0, 3.5])
def test_euler_sampler_reproduces_flux_pipeline(tiny_flux_folder, guidance):
    adapter = make_adapter(tiny_flux_folder)
    pipe = pipe_of(tiny_flux_folder)
    out = pipe(
        prompt=PROMPTS,
        height=RES,
        width=RES,
        num_inference_steps=4,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
        max_sequence_length=adapter.max_sequence_length,
    ).images
    _, z = initial_noise(adapter, len(PROMPTS), 7)
    times, sigmas = adapter.pipeline_schedule(4)
    assert sigmas[1] != pytest.approx(0.75)  # the dynamic shift is in effect, and reproduced
    ours = euler_sample(adapter.teacher, z, adapter.encode_prompts(PROMPTS), sigmas, times, guidance)
    assert out.shape == ours.shape == (2, *adapter.latent_shape)
    assert (ours - out).abs().max().item() <= 1e-4
    # the comparison is sensitive: another guidance gives different latents
    other = euler_sample(adapter.teacher, z, adapter.encode_prompts(PROMPTS), sigmas, times, guidance + 2)
    assert (other - out).abs().max().item() > 1e-3


def test_timestep_scale_is_unit_interval(tiny_flux_folder):
    """FLUX takes t in [0, 1]; the transformer multiplies by 1000 before its sinusoidal embedding."""
    adapter = make_adapter(tiny_flux_folder)
    seen = []
    embed = adapter.transformer.time_text_embed
    handle = embed.time_proj.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    cond = adapter.encode_prompts(PROMPTS)
    t = torch.tensor([0.25, 0.8])
    adapter.teacher.guided_velocity(torch.randn(2, *adapter.latent_shape), t, cond, 3.0)
    handle.remove()
    timestep, guidance = seen  # time_proj runs for the timestep, then for the guidance embedding
    torch.testing.assert_close(timestep, t * 1000)
    torch.testing.assert_close(guidance, torch.full((2,), 3000.0))


@pytest.mark.parametrize("t", [1.0, 0.6])
def test_x0_prediction_matches_one_pipeline_step(tiny_flux_folder, t):
    """x0_hat = x_t - t v (SID.md 1): a one-step Euler pipeline run from x_t at sigma t lands on it."""
    adapter = make_adapter(tiny_flux_folder)
    pipe = pipe_of(tiny_flux_folder)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    torch.manual_seed(3)
    x0 = torch.randn(2, *adapter.latent_shape)
    eps = torch.randn_like(x0)
    x_t = (1 - t) * x0 + t * eps
    out = pipe(
        prompt=PROMPTS,
        height=RES,
        width=RES,
        latents=x_t,
        sigmas=np.array([t]),
        num_inference_steps=1,
        guidance_scale=2.0,
        output_type="latent",
        max_sequence_length=adapter.max_sequence_length,
    ).images
    v = adapter.teacher.guided_velocity(x_t, torch.full((2,), t), adapter.encode_prompts(PROMPTS), 2.0)
    torch.testing.assert_close(x0_from_velocity(x_t, torch.full((2,), t), v), out, atol=1e-5, rtol=0)


def test_packing_round_trip_and_vae(tiny_flux_folder):
    adapter = make_adapter(tiny_flux_folder)
    z, packed = initial_noise(adapter, 2, 0)
    assert packed.shape == (2, *adapter.latent_shape)
    torch.testing.assert_close(adapter.unpack_latents(packed), z, rtol=0, atol=0)
    images = adapter.decode(packed)
    assert images.shape == (2, 3, RES, RES) and 0 <= images.min() and images.max() <= 1
    # decode = vae.decode(z / scaling + shift), as FluxPipeline's postprocessing
    pipe = pipe_of(tiny_flux_folder)
    cfg = pipe.vae.config
    expected = pipe.vae.decode(z / cfg.scaling_factor + cfg.shift_factor).sample
    torch.testing.assert_close(images, (expected / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=0)
    # encode inverts the normalisation: (z_vae - shift) * scaling, packed
    latents = adapter.encode_images(images)
    assert latents.shape == packed.shape
    mode = pipe.vae.encode(images * 2 - 1).latent_dist.mode()
    torch.testing.assert_close(
        adapter.unpack_latents(latents), (mode - cfg.shift_factor) * cfg.scaling_factor
    )


def test_prompt_cache_and_null_condition(tiny_flux_folder):
    adapter = make_adapter(tiny_flux_folder)
    cond = adapter.encode_prompts(PROMPTS)
    assert cond.tensors["prompt_embeds"].shape[:2] == (2, adapter.max_sequence_length)
    assert cond.null is adapter.encode_prompts(["x"]).null  # the empty prompt is encoded once
    empty = adapter.encode_prompts([""])
    torch.testing.assert_close(empty.tensors["pooled_prompt_embeds"], cond.null["pooled_prompt_embeds"])


def test_guidance_modes(tiny_flux_folder):
    """embedding mode: one pass with embedding k; cfg mode: two passes at a fixed embedding."""
    adapter = make_adapter(tiny_flux_folder, flux_guidance=FluxGuidanceConfig(fake="cfg", cfg_embedding=1.0))
    fake = adapter.make_trainable_copy("fake")
    cond = adapter.encode_prompts(PROMPTS)
    x, t = torch.randn(2, *adapter.latent_shape), torch.tensor([0.5, 0.7])
    with torch.no_grad():
        v_c = adapter.teacher.guided_velocity(x, t, cond, 1.0)
        v_u = adapter.teacher.guided_velocity(x, t, cond.unconditional(), 1.0)
        torch.testing.assert_close(fake.guided_velocity(x, t, cond, 4.0), v_u + 4.0 * (v_c - v_u))
        emb4 = adapter.teacher.guided_velocity(x, t, cond, 4.0)
        assert (emb4 - (v_u + 4.0 * (v_c - v_u))).abs().max() > 1e-4
        torch.testing.assert_close(fake.guided_velocity(x, t, cond, 1.0), v_c)


def test_resolution_must_fit_packing(tiny_flux_folder):
    with pytest.raises(ConfigError, match="model.resolution"):
        build_adapter(ModelConfig(name="flux-tiny", path=str(tiny_flux_folder), resolution=RES + 2))


def run_config(folder, guidance: FluxGuidanceConfig | None = None, **sid) -> RunConfig:
    model = ModelConfig(name="flux-tiny", path=str(folder), resolution=RES)
    if guidance is not None:
        model.flux_guidance = guidance
    return RunConfig(model=model, sid=SiDConfig(**sid))


@pytest.mark.parametrize(
    "sid, field",
    [
        ({"fake_guidance_train": 0.0, "fake_guidance_eval": 0.0}, "fake"),  # Zero-CFG
        ({"fake_guidance_eval": -0.5}, "fake"),  # Anti-CFG
        ({"teacher_guidance": 0.0}, "teacher"),
    ],
)
def test_non_positive_scale_in_embedding_mode_is_a_config_error(tiny_flux_folder, tmp_path, sid, field):
    # the check runs on the folder's configs before any weight is read: without the transformer's
    # weights the error is still the guidance one, not a loading error
    folder = shutil.copytree(tiny_flux_folder, tmp_path / "teacher")
    next((folder / "transformer").glob("*.safetensors")).unlink()
    with pytest.raises(ConfigError) as err:
        build_adapter(run_config(folder, **sid))
    message = str(err.value)
    assert message.startswith(f"model.flux_guidance.{field}: 'embedding' mode")
    assert f"set model.flux_guidance.{field}=cfg" in message
    assert all(f"sid.{name}={k:g}" in message for name, k in sid.items())


def test_zero_cfg_on_fake_in_cfg_mode(tiny_flux_folder):
    """With fake="cfg", k = 0 is F's unconditional pass at the fixed embedding (SID.md 5)."""
    config = run_config(
        tiny_flux_folder,
        FluxGuidanceConfig(fake="cfg", cfg_embedding=2.0),
        fake_guidance_train=0.0,
        fake_guidance_eval=0.0,
    )
    adapter = build_adapter(config)
    fake = adapter.make_trainable_copy("fake")
    cond = adapter.encode_prompts(PROMPTS)
    x, t = torch.randn(2, *adapter.latent_shape), torch.tensor([0.5, 0.7])
    with torch.no_grad():
        v_zero = fake.guided_velocity(x, t, cond, 0.0)
        # T in embedding mode: scale k is its embedding, so this is T's unconditional pass at 2.0
        torch.testing.assert_close(v_zero, adapter.teacher.guided_velocity(x, t, cond.unconditional(), 2.0))
        assert (v_zero - adapter.teacher.guided_velocity(x, t, cond.unconditional(), 1.0)).abs().max() > 1e-4


def test_no_guidance_embedding_accepts_zero_cfg(tiny_flux_folder):
    # FLUX without a guidance embedding (e.g. the digits teacher) always runs two-pass CFG
    components = load_components(
        tiny_flux_folder, ("transformer", "scheduler", "vae", *FluxAdapter.text_parts)
    )
    components["transformer"] = tiny_flux_transformer(guidance_embeds=False)
    model = ModelConfig(name="flux-tiny", path=str(tiny_flux_folder), resolution=RES)
    adapter = FluxAdapter(model, components, sid=SiDConfig(fake_guidance_train=0.0, fake_guidance_eval=0.0))
    fake = adapter.make_trainable_copy("fake")
    cond = adapter.encode_prompts(PROMPTS)
    x, t = torch.randn(2, *adapter.latent_shape), torch.tensor([0.5, 0.7])
    with torch.no_grad():  # k = 0 in the default "embedding" mode is the unconditional pass
        torch.testing.assert_close(
            fake.guided_velocity(x, t, cond, 0.0), fake.velocity(x, t, cond.unconditional())
        )


def test_build_adapter_accepts_run_config_or_model_and_sid(tiny_flux_folder):
    config = run_config(tiny_flux_folder, generator_guidance=3.5)
    assert build_adapter(config).generator_guidance == 3.5
    assert build_adapter(config.model, config.sid).generator_guidance == 3.5
    assert build_adapter(config.model).generator_guidance == 1.0  # SiDConfig's default
