"""SiD iterations on the tiny SD3.5 and SANA teachers: full copies and the shared LoRA base.

The adapters' contract with the training loop: F and G start as exact copies of T, a SiD step
(gradient through T's and F's inputs, SID.md 4) leaves T bit-identical and moves G, LoRA lands on
the family's attention projections, and a LoRA generator merges into a plain transformer.
"""

from __future__ import annotations

import pytest
import torch

from sid_ray.config.schema import LoraConfig, ModelConfig
from sid_ray.models.lora import merged_transformer
from sid_ray.models.sana import SanaAdapter
from sid_ray.models.sd3 import SD3Adapter
from sid_ray.models.tiny.sana import write_tiny_sana
from sid_ray.models.tiny.sd3 import write_tiny_sd3
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, distill_step
from sid_ray.sid.time_laws import LogitNormal
from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam
from tests.sid.networks import sid_settings

PROMPTS = ["a red cat", "two dogs on a beach"]
# family -> (adapter class, tiny builder, resolution, LoRA targets that must have been adapted)
FAMILIES = {
    "sd3-tiny": (SD3Adapter, write_tiny_sd3, 64, ("attn.to_q", "attn.add_q_proj", "attn.to_add_out")),
    "sana-tiny": (SanaAdapter, write_tiny_sana, 128, ("attn1.to_q", "attn2.to_k", "attn2.to_out.0")),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        name: builder(tmp_path_factory.mktemp(name) / "pipeline")
        for name, (_, builder, _, _) in FAMILIES.items()
    }


def make_adapter(folders, name: str, mode: str):
    cls, _, resolution, _ = FAMILIES[name]
    lora = LoraConfig(mode=mode, rank=4, alpha=8.0)
    return cls(ModelConfig(name=name, path=str(folders[name]), resolution=resolution, lora=lora))


def probe(adapter, model, cond, guidance: float = 1.0) -> torch.Tensor:
    x = torch.randn((2, *adapter.latent_shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model.guided_velocity(x, torch.tensor([0.3, 0.9]), cond, guidance)


@pytest.mark.parametrize("mode", ["full", "shared_base"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_sid_steps_train_generator_and_keep_teacher(folders, name, mode):
    torch.manual_seed(0)
    adapter = make_adapter(folders, name, mode)
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    cond = adapter.encode_prompts(PROMPTS)
    teacher_before = probe(adapter, adapter.teacher, cond, 4.5)
    # SID.md 2: F and G start as exact copies of T (LoRA B starts at zero)
    assert torch.equal(probe(adapter, fake, cond, 4.5), teacher_before)
    assert torch.equal(probe(adapter, generator, cond, 4.5), teacher_before)
    if mode == "shared_base":
        adapted = {n for n, p in generator.named_parameters()}
        for target in FAMILIES[name][3]:
            assert any(target.replace(".", "__") + "__lora_" in n for n in adapted), (
                target,
                sorted(adapted)[:4],
            )

    nets = [TorchTrainedNetwork(m, sid_adam(m.parameters(), lr=1e-2)) for m in (fake, generator)]
    # the SANA reference run's guidance for teacher and fake network (SID.md 5)
    settings = sid_settings(
        num_steps=4,
        time_law=LogitNormal(),
        teacher_guidance=4.5,
        fake_guidance_train=4.5,
        fake_guidance_eval=4.5,
    )
    for iteration in range(2):
        metrics = distill_step(
            SiDNetworks(adapter.teacher, *nets),
            [MicroBatch(cond, 2)],
            settings,
            StepContext(0, iteration, adapter.latent_shape),
        ).as_floats()
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics

    assert torch.equal(probe(adapter, adapter.teacher, cond, 4.5), teacher_before)
    assert (probe(adapter, generator, cond) - probe(adapter, adapter.teacher, cond)).abs().max() > 1e-5
    if mode == "shared_base":
        # a LoRA generator exports as a plain transformer with the adapter fused in
        merged = adapter.velocity_model(merged_transformer(generator), "generator")
        torch.testing.assert_close(
            probe(adapter, merged, cond), probe(adapter, generator, cond), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("name", list(FAMILIES))
def test_bf16_teacher_takes_fp32_latents(folders, name):
    """bf16 weights (model.dtype), fp32 latents in and out; the timestep stays fp32 (1000 t in
    bf16 would round to 8 significant bits)."""
    cls, _, resolution, _ = FAMILIES[name]
    fp32 = make_adapter(folders, name, "full")
    bf16 = cls(ModelConfig(name=name, path=str(folders[name]), resolution=resolution, dtype="bfloat16"))
    assert next(bf16.transformer.parameters()).dtype == torch.bfloat16
    seen: list[torch.Tensor] = []
    hook = bf16.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["timestep"]), with_kwargs=True
    )
    try:
        v16 = probe(bf16, bf16.teacher, bf16.encode_prompts(PROMPTS), 4.5)
    finally:
        hook.remove()
    v32 = probe(fp32, fp32.teacher, fp32.encode_prompts(PROMPTS), 4.5)
    assert v16.dtype == torch.float32 and seen[0].dtype == torch.float32
    assert seen[0].tolist() == pytest.approx([300.0, 900.0, 300.0, 900.0])  # CFG: cond then uncond
    assert (v16 - v32).abs().max() < 0.1 * v32.abs().max()
