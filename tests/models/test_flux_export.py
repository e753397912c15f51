"""Export round trip: stock diffusers, in a process that never imports sid_ray, samples G in K steps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from sid_ray.config.schema import LoraConfig, ModelConfig, RunConfig, SiDConfig
from sid_ray.models.flux import FluxAdapter
from sid_ray.models.registry import build_adapter
from sid_ray.models.sampling import sid_sample
from sid_ray.sid import rollout_times

PROMPTS = ["a red cat", "two dogs"]
K = 4
SEED = 123

# runs in a fresh interpreter: stock diffusers only
STOCK_SAMPLER = textwrap.dedent(
    """
    import json, sys, torch
    from diffusers import FluxPipeline
    from safetensors.torch import load_file, save_file
    folder, io, (prompts, k, seed) = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    pipe = FluxPipeline.from_pretrained(folder, dtype=torch.float32)
    z = load_file(io + "/z.safetensors")["z"]
    kwargs = dict(prompt=prompts, height=16, width=16, num_inference_steps=k, latents=z,
                  guidance_scale=7.0, max_sequence_length=16)
    torch.manual_seed(seed)  # the scheduler's fresh noise comes from the global generator
    latents = pipe(output_type="latent", **kwargs).images
    torch.manual_seed(seed)
    images = pipe(output_type="pt", **kwargs).images
    assert "sid_ray" not in sys.modules, "the stock process imported sid_ray"
    save_file({"latents": latents.contiguous(), "images": images.contiguous()}, io + "/out.safetensors")
    """
)


def perturbed_generator(adapter: FluxAdapter):
    """G as training leaves it: some weights moved away from T."""
    generator = adapter.make_trainable_copy("generator")
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if "lora_B" in name or name.endswith("proj_out.weight") or "timestep_embedder" in name:
                p.add_(torch.randn_like(p) * 0.05)
    return generator


# (LoRA mode, sid.generator_guidance): the export folds G's embedding from the config's SiD section
@pytest.mark.parametrize("mode, generator_guidance", [("full", 3.5), ("shared_base", 1.0)])
def test_export_round_trip_in_stock_diffusers(tiny_flux_folder, tmp_path, mode, generator_guidance):
    lora = LoraConfig(mode=mode, rank=4, alpha=4.0)
    model = ModelConfig(name="flux-tiny", path=str(tiny_flux_folder), resolution=16, lora=lora)
    adapter = build_adapter(RunConfig(model=model, sid=SiDConfig(generator_guidance=generator_guidance)))
    generator = perturbed_generator(adapter)
    folder = adapter.export(generator, tmp_path / "export", num_steps=K)
    assert (folder / "README.md").is_file() and not list(folder.rglob("*.bin"))
    assert "torch.manual_seed(0)" in (folder / "README.md").read_text()  # FluxPipeline: global generator

    h, w = adapter.latent_grid
    z = adapter.pack_latents(torch.randn((len(PROMPTS), 4, h, w), generator=torch.Generator().manual_seed(0)))
    save_file({"z": z}, tmp_path / "z.safetensors")
    cond = adapter.encode_prompts(PROMPTS)
    torch.manual_seed(SEED)
    ours = sid_sample(generator, z, cond, num_steps=K, guidance=generator_guidance, generator=None)

    script = tmp_path / "stock.py"
    script.write_text(STOCK_SAMPLER)
    run = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path), json.dumps([PROMPTS, K, SEED])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stock = load_file(tmp_path / "out.safetensors")
    diff = (stock["latents"] - ours).abs().max().item()
    assert diff <= 1e-4, diff
    torch.testing.assert_close(stock["images"], adapter.decode(ours), atol=1e-4, rtol=0)
    # the comparison can fail: the teacher's K-step samples from the same noise are different,
    torch.manual_seed(SEED)
    teacher = sid_sample(adapter.teacher, z, cond, num_steps=K, generator=None)
    assert (teacher - stock["latents"]).abs().max() > 1e-3
    # and so are G's at another guidance embedding (the fold used the configured one)
    torch.manual_seed(SEED)
    other = sid_sample(generator, z, cond, num_steps=K, guidance=generator_guidance + 2.5, generator=None)
    assert (other - stock["latents"]).abs().max() > 1e-3


def test_exported_scheduler_times_are_the_rollout_times(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from sid_ray.models.export import check_rollout_schedule, rollout_scheduler

    for k in (1, 2, 4, 8):
        check_rollout_schedule(rollout_scheduler(k), k)  # raises if not 1 - i/K
        for shift in (0.5, 3.0):  # raises if FluxPipeline's sigmas do not reach the shifted times
            check_rollout_schedule(rollout_scheduler(k, shift), k, shift)
    rollout_scheduler(4).save_pretrained(tmp_path)
    loaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path)
    loaded.set_timesteps(4)
    torch.testing.assert_close(loaded.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert loaded.config.stochastic_sampling
    # a shifted schedule: FluxPipeline's default sigmas reach exactly the roll-out's times
    rollout_scheduler(4, 0.5).save_pretrained(tmp_path / "shifted")
    loaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "shifted")
    loaded.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(loaded.sigmas, torch.tensor([*rollout_times(4, 0.5), 0.0]))
    assert rollout_times(4, 0.5) == pytest.approx([1.0, 0.6, 1 / 3, 1 / 7])


def test_export_without_the_runs_sid_section_warns(tiny_flux_folder, tmp_path):
    """A FLUX adapter built from a bare ModelConfig never read sid.generator_guidance; say so."""
    model = ModelConfig(name="flux-tiny", path=str(tiny_flux_folder), resolution=16)
    adapter = build_adapter(model)
    with pytest.warns(UserWarning, match="build it with build_adapter\\(run_config\\)"):
        adapter.export(adapter.make_trainable_copy("generator"), tmp_path / "bare", num_steps=K)
    adapter = build_adapter(RunConfig(model=model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        adapter.export(adapter.make_trainable_copy("generator"), tmp_path / "run", num_steps=K)
