"""LoRA modes on the tiny FLUX: shared base (one frozen base, two adapters) and separate copies."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline
from torch.utils.checkpoint import CheckpointError

from sid_ray.config.schema import LoraConfig, ModelConfig
from sid_ray.models.flux import FluxAdapter, FluxGuidance, FluxVelocity
from sid_ray.models.lora import LoraView, lora_parameters, merged_transformer, unique_storage_bytes
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, distill_step, parameters_frozen
from sid_ray.sid.time_laws import LogitNormal
from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam
from tests.sid.networks import sid_settings

PROMPTS = ["a red cat", "two dogs"]


def make_adapter(folder, mode: str, **kwargs) -> FluxAdapter:
    lora = LoraConfig(mode=mode, rank=4, alpha=8.0)
    return FluxAdapter(ModelConfig(name="flux-tiny", path=str(folder), resolution=16, lora=lora, **kwargs))


def probe(adapter, model, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, *adapter.latent_shape), generator=g)
    with torch.no_grad():
        return model.guided_velocity(x, torch.tensor([0.3, 0.9]), adapter.encode_prompts(PROMPTS), 2.5)


def optimizer_ids(opt) -> set[int]:
    return {id(p) for group in opt.param_groups for p in group["params"]}


def run_steps(adapter, fake, generator, steps: int = 2, lr: float = 1e-2):
    nets = [TorchTrainedNetwork(m, sid_adam(m.parameters(), lr=lr)) for m in (fake, generator)]
    settings = sid_settings(num_steps=4, time_law=LogitNormal(), teacher_guidance=2.0)
    batch = [MicroBatch(adapter.encode_prompts(PROMPTS), 2)]
    for it in range(steps):
        distill_step(
            SiDNetworks(adapter.teacher, *nets), batch, settings, StepContext(0, it, adapter.latent_shape)
        )
    return nets


@pytest.mark.parametrize("mode", ["shared_base", "lora"])
def test_teacher_frozen_and_only_lora_trained(tiny_flux_folder, mode):
    torch.manual_seed(0)
    adapter = make_adapter(tiny_flux_folder, mode)
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    t_before = probe(adapter, adapter.teacher)
    # F and G start as exact copies of T (SID.md 2; LoRA B = 0)
    assert torch.equal(probe(adapter, fake), t_before) and torch.equal(probe(adapter, generator), t_before)
    base_before = {n: p.detach().clone() for n, p in adapter.transformer.named_parameters()}
    lora_before = {id(p): p.detach().clone() for m in (fake, generator) for p in m.parameters()}

    nets = run_steps(adapter, fake, generator)

    for net, view in zip(nets, (fake, generator), strict=True):
        assert isinstance(view, LoraView)
        own = lora_parameters(view.base, view.adapter)
        assert optimizer_ids(net.optimizer) == {id(p) for p in own.values()}
        assert all("lora_" in n for n in own) and len(own) > 0
    assert not optimizer_ids(nets[0].optimizer) & optimizer_ids(nets[1].optimizer)
    # the teacher's outputs and every base weight are bit-identical after training
    assert torch.equal(probe(adapter, adapter.teacher), t_before)
    for n, p in adapter.transformer.named_parameters():
        assert "lora_" in n or torch.equal(p, base_before[n]), n
    # ... while the adapters did train and now change the outputs
    assert any(not torch.equal(p, lora_before[id(p)]) for p in fake.parameters())
    assert any(not torch.equal(p, lora_before[id(p)]) for p in generator.parameters())
    assert (probe(adapter, fake) - t_before).abs().max() > 1e-6
    assert (probe(adapter, generator) - t_before).abs().max() > 1e-6


def test_shared_base_stores_base_weights_once(tiny_flux_folder):
    shared = make_adapter(tiny_flux_folder, "shared_base")
    views = [shared.teacher, shared.make_trainable_copy("fake"), shared.make_trainable_copy("generator")]
    named = dict(shared.transformer.named_parameters())
    base_bytes = sum(p.nbytes for n, p in named.items() if "lora_" not in n)
    lora_bytes = sum(p.nbytes for n, p in named.items() if "lora_" in n)
    assert unique_storage_bytes([shared.transformer, *views]) == base_bytes + lora_bytes
    assert lora_bytes < 0.5 * base_bytes
    full = make_adapter(tiny_flux_folder, "full")
    copies = [full.teacher, full.make_trainable_copy("fake"), full.make_trainable_copy("generator")]
    assert unique_storage_bytes(copies) == 3 * base_bytes


def test_adapter_switching_keeps_requires_grad(tiny_flux_folder):
    """peft's set_adapter makes the activated adapter trainable; views must not (F frozen while G steps)."""
    adapter = make_adapter(tiny_flux_folder, "shared_base")
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    with parameters_frozen(fake):
        probe(adapter, fake)
        probe(adapter, generator)
        probe(adapter, adapter.teacher)
        assert not any(p.requires_grad for p in fake.parameters())
        assert all(p.requires_grad for p in generator.parameters())
    assert all(p.requires_grad for p in fake.parameters())
    assert not any(p.requires_grad for n, p in adapter.transformer.named_parameters() if "lora_" not in n)


def _generator_grads(adapter, fake, generator):
    """Gradient into G through T's and F's inputs (the G update's graph shape, SID.md 4)."""
    cond = adapter.encode_prompts(PROMPTS)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, *adapter.latent_shape), generator=g)
    t = torch.tensor([0.4, 0.7])
    generator.zero_grad()
    with parameters_frozen(fake):
        x_g = x - generator.guided_velocity(x, t, cond, 1.0)
        diff = adapter.teacher.guided_velocity(x_g, t, cond, 2.0) - fake.guided_velocity(x_g, t, cond, 1.0)
        (diff.pow(2).sum() + x_g.pow(2).sum()).backward()
    return [p.grad.clone() for p in generator.parameters()]


def test_gradient_checkpointing_pins_adapter_in_shared_base(tiny_flux_folder):
    torch.manual_seed(0)
    adapter = make_adapter(tiny_flux_folder, "shared_base")
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    with torch.no_grad():  # make the two adapters differ from each other and from T
        for n, p in adapter.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    plain = _generator_grads(adapter, fake, generator)
    adapter.set_gradient_checkpointing(True)
    assert adapter.transformer.gradient_checkpointing
    pinned = _generator_grads(adapter, fake, generator)
    for a, b in zip(plain, pinned, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # diffusers' stock checkpoint function recomputes with whatever adapter is active then
    adapter.transformer.enable_gradient_checkpointing()
    try:
        naive = _generator_grads(adapter, fake, generator)
        wrong = max((a - b).abs().max().item() for a, b in zip(plain, naive, strict=True)) > 1e-4
    except CheckpointError:  # torch notices when the recompute saves a different number of tensors
        wrong = True
    assert wrong


@pytest.mark.parametrize(
    "mode,share", [("shared_base", 0.0), ("lora", 0.0), ("full", 0.0), ("shared_base", 0.5), ("full", 0.5)]
)
def test_frozen_checkpoint_policy_recomputes_only_frozen_passes(tiny_flux_folder, monkeypatch, mode, share):
    """model.checkpoint_policy=frozen: T and the frozen F are checkpointed, G keeps its
    activations but in `checkpoint_trained_share` of its blocks, and G's gradient is the one
    without checkpointing."""
    import sid_ray.models.dit as dit
    import sid_ray.models.lora as lora

    torch.manual_seed(0)
    adapter = make_adapter(tiny_flux_folder, mode, checkpoint_policy="frozen", checkpoint_trained_share=share)
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    with torch.no_grad():
        for p in [*fake.parameters(), *generator.parameters()]:
            p.add_(torch.randn_like(p) * 0.05)
    plain = _generator_grads(adapter, fake, generator)
    checkpointed = []

    def counting(real):
        def checkpoint(function, *args, **kwargs):
            checkpointed.append(function)
            return real(function, *args, **kwargs)

        return checkpoint

    monkeypatch.setattr(lora, "checkpoint", counting(lora.checkpoint))
    monkeypatch.setattr(dit, "checkpoint", counting(dit.checkpoint))
    adapter.set_gradient_checkpointing(True, [fake, generator])
    selective = _generator_grads(adapter, fake, generator)
    for a, b in zip(plain, selective, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    blocks = len(adapter.transformer.transformer_blocks) + len(adapter.transformer.single_transformer_blocks)
    # T's and F's forwards, and int(blocks * share) of G's
    assert len(checkpointed) == 2 * blocks + int(blocks * share)


def test_lora_export_and_merge(tiny_flux_folder, tmp_path):
    torch.manual_seed(0)
    adapter = make_adapter(tiny_flux_folder, "shared_base")
    generator = adapter.make_trainable_copy("generator")
    with torch.no_grad():
        for p in generator.parameters():
            p.normal_(0, 0.05)
    expected = probe(adapter, generator)
    # merged: a plain transformer of the teacher's class
    merged = merged_transformer(generator)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    as_plain = FluxVelocity(merged, adapter.latent_grid, FluxGuidance())
    torch.testing.assert_close(probe(adapter, as_plain), expected, atol=1e-5, rtol=1e-5)
    # LoRA safetensors loaded by stock diffusers onto the teacher pipeline
    folder = adapter.export_lora(generator, tmp_path / "lora")
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    pipe = FluxPipeline.from_pretrained(tiny_flux_folder, dtype=torch.float32)
    pipe.load_lora_weights(folder)
    stock = FluxVelocity(pipe.transformer, adapter.latent_grid, FluxGuidance())
    torch.testing.assert_close(probe(adapter, stock), expected, atol=1e-5, rtol=1e-5)
