"""Every shipped YAML loads through load_config; DeepSpeed configs derive from ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.train.ds_config import check_batch, teacher_config, trained_network_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_yaml_loads(path):
    config = load_config(path)
    assert check_batch(config) >= 1
    for role in ("fake", "generator"):
        trained_network_config(config, role)


def test_batch_product_is_asserted():
    config = load_config(None, ["train.batch_size=16", "train.micro_batch_size=2", "train.num_workers=2"])
    ds = trained_network_config(config, "generator")
    assert ds["gradient_accumulation_steps"] == 4
    assert (
        ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * 2 == ds["train_batch_size"]
    )
    config.train.batch_size = 18  # not a multiple: the config tree refuses it before DeepSpeed sees it
    with pytest.raises(ConfigError, match="train.batch_size"):
        config.validate()
    config.train.batch_size = 12  # a multiple of 2 x 2 is fine: accumulation 3
    assert check_batch(config) == 3


def test_deepspeed_config_follows_ours():
    config = load_config(
        None,
        [
            "train.zero_stage=2",
            "train.mixed_precision=bf16",
            "optim.generator_lr=3e-6",
            "optim.fake_lr=2e-6",
            "optim.grad_clip=1.0",
        ],
    )
    generator = trained_network_config(config, "generator")
    fake = trained_network_config(config, "fake")
    assert generator["optimizer"]["params"]["lr"] == 3e-6 and fake["optimizer"]["params"]["lr"] == 2e-6
    assert generator["optimizer"]["params"]["betas"] == [0.0, 0.999]
    assert generator["optimizer"]["params"]["torch_adam"] is True
    assert generator["bf16"] == {"enabled": True}
    assert generator["gradient_clipping"] == 1.0
    assert generator["zero_optimization"]["stage"] == 2
    assert "stage3_prefetch_bucket_size" not in generator["zero_optimization"]
    teacher = teacher_config(config)
    assert teacher["zero_optimization"]["stage"] == 3 and "optimizer" not in teacher

    def no_auto(tree):  # HF's "auto" means nothing to DeepSpeed without transformers' Trainer
        if isinstance(tree, dict):
            return all(no_auto(v) for v in tree.values())
        return tree != "auto"

    assert no_auto(generator) and no_auto(teacher)
    assert teacher["zero_optimization"]["stage3_prefetch_bucket_size"] > 0
