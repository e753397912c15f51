"""`checkpoint.export_generator` without Ray: one process in a gloo group and real DeepSpeed
engines, G ZeRO-3 partitioned (every parameter an empty shard until gathered)."""

from __future__ import annotations

import socket

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sid_ray.config import load_config
from sid_ray.models.registry import build_adapter
from sid_ray.train import checkpoint
from sid_ray.train.ds_config import trained_network_config
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.engines import build_trained_network


@pytest.fixture(scope="module")
def gloo_group():
    """A one-rank process group, as `deepspeed.init_distributed` makes it in a Ray worker."""
    import deepspeed
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**env, "LOCAL_RANK": "0"}.items():
            patch.setenv(key, value)
        deepspeed.init_distributed(dist_backend="gloo")
        yield
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    from sid_ray.models.tiny.flux import build_tiny_flux

    torch.manual_seed(0)
    return build_tiny_flux(tmp_path_factory.mktemp("flux-tiny") / "pipeline")


def run_config(tmp_path, *overrides: str):
    return load_config(
        None,
        [
            f"output_dir={tmp_path}",
            "train.batch_size=2",
            "train.micro_batch_size=2",
            "train.num_workers=1",
            *overrides,
        ],
    )


def engine(module: nn.Module, config, stage: int = 3):
    """G's engine as the worker builds it, with every parameter partitioned under ZeRO-3 (the
    default persistence threshold would keep the tiny ones whole)."""
    ds = trained_network_config(config, "generator")
    ds["zero_optimization"] = {
        **ds["zero_optimization"],
        "stage": stage,
        "stage3_param_persistence_threshold": 0,
    }
    return build_trained_network(module, ds)


def assert_partitioned(module: nn.Module) -> None:
    assert all(p.numel() == 0 and p.ds_numel > 0 for p in module.parameters())


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 4))


def cloned_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(state) == sorted(expected)  # safetensors files list their keys sorted
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


@pytest.mark.parametrize(
    "policy, final, written",
    [("auto", False, True), ("always", False, True), ("never", False, False), ("never", True, True)],
)
def test_generator_weights_policy(gloo_group, tmp_path, policy, final, written):
    config = run_config(tmp_path, f"train.generator_in_checkpoints={policy}")
    module = mlp()
    expected = cloned_state(module)
    net = engine(module, config)
    assert_partitioned(module)
    out = checkpoint.export_generator(tmp_path, net, build_adapter(config), config, 0, final=final)
    weights = tmp_path / "export" / "generator.safetensors"
    assert weights.is_file() == written
    assert out == (tmp_path / "export" if written else None)
    if written:  # gathered from the shards; the toy teacher has no pipeline format
        assert_same(load_file(weights), expected)
        assert [p.name for p in out.iterdir()] == ["generator.safetensors"]


def test_auto_policy_counts_the_unsharded_size(gloo_group, tmp_path, monkeypatch):
    config = run_config(tmp_path, "train.generator_in_checkpoints=auto")
    module = mlp()
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    net = engine(module, config)
    assert checkpoint.unsharded_bytes(module) == nbytes  # from ds_numel: the local tensors are empty
    monkeypatch.setattr(checkpoint, "AUTO_GENERATOR_MAX_BYTES", nbytes)  # "under" the limit: no
    assert checkpoint.export_generator(tmp_path, net, build_adapter(config), config, 0) is None
    assert not (tmp_path / "export").exists()


def test_export_writes_the_ema_and_restores_the_weights(gloo_group, tmp_path):
    config = run_config(tmp_path)
    module = mlp()
    expected = cloned_state(module)
    net = engine(module, config)
    ema = ParameterEMA(module, halflife_kimg=1.0)
    for shadow in ema.shadow:
        shadow.add_(1.0)
    checkpoint.export_generator(tmp_path, net, build_adapter(config), config, 0, ema, final=True)
    assert_same(
        load_file(tmp_path / "export" / "generator.safetensors"), {k: v + 1 for k, v in expected.items()}
    )
    assert_same(checkpoint.gathered_state_dict(module, 0), expected)


# (LoRA mode, ZeRO stage of G as the worker sets it, rank): rank 1 gathers with rank 0 and writes nothing
@pytest.mark.parametrize("mode, stage, rank", [("full", 3, 0), ("lora", 2, 0), ("full", 3, 1)])
def test_final_checkpoint_streams_the_pipeline_from_gs_module(
    gloo_group, tiny_flux, tmp_path, mode, stage, rank
):
    config = run_config(
        tmp_path,
        "model.name=flux-tiny",
        f"model.path={tiny_flux}",
        "model.resolution=16",
        f"model.lora.mode={mode}",
        "model.lora.rank=4",
        "sid.generator_guidance=3.5",
    )
    adapter = build_adapter(config)
    generator = adapter.make_trainable_copy("generator")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    expected = cloned_state(generator)
    reference = adapter.export(generator, tmp_path / "reference", num_steps=config.sid.num_steps)
    net = engine(generator, config, stage)
    if stage == 3:
        assert_partitioned(generator)

    out = checkpoint.export_generator(tmp_path / "ckpt", net, adapter, config, rank, final=True)
    if stage == 3:  # each submodule released after its gather
        assert_partitioned(generator)
    if rank != 0:
        assert out is None and not (tmp_path / "ckpt").exists()
        return
    assert_same(load_file(out / "generator.safetensors"), expected)
    pipeline = out / "pipeline"
    for part in ("model_index.json", "transformer/config.json", "scheduler/scheduler_config.json"):
        assert (pipeline / part).read_text() == (reference / part).read_text(), part
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert_same(load_file(pipeline / weights), load_file(reference / weights))


def test_export_pipeline_false_keeps_only_the_weights(gloo_group, tiny_flux, tmp_path):
    config = run_config(
        tmp_path,
        "model.name=flux-tiny",
        f"model.path={tiny_flux}",
        "model.resolution=16",
        "model.lora.mode=shared_base",
        "model.lora.rank=4",
        "train.export_pipeline=false",
    )
    adapter = build_adapter(config)
    net = engine(adapter.make_trainable_copy("generator"), config, stage=2)
    out = checkpoint.export_generator(tmp_path / "ckpt", net, adapter, config, 0, final=True)
    assert [p.name for p in out.iterdir()] == ["generator.safetensors"]
