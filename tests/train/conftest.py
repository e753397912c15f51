"""Shared fixtures of the distributed-training tests: a throwaway local Ray cluster."""

from __future__ import annotations

import os

import pytest

from sid_ray.config import load_config


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (token auth off: nothing outside can reach it)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def toy_config(tmp_path, name: str, *overrides: str):
    """A few-iteration gmm-ring run: global batch 8 = 2 per micro-batch x 2 accumulation x 2 workers."""
    return load_config(
        None,
        [
            f"name={name}",
            f"output_dir={tmp_path}",
            "train.batch_size=8",
            "train.micro_batch_size=2",
            "train.num_workers=2",
            "train.log_every=1",
            "train.keep_checkpoints=0",
            "optim.generator_lr=1e-4",
            "optim.fake_lr=1e-4",
            *overrides,
        ],
    )
