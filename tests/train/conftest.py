"""Shared fixtures of the distributed-training tests: a throwaway local Ray cluster."""

from __future__ import annotations

import pytest

from sid_ray.config import load_config
from tests.local_ray import local_ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (token auth off: nothing outside can reach it)."""
    with local_ray(num_cpus=4) as ray:
        yield ray


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


def launch_and_run_local(config, local_name: str):
    """The same config through Ray Train workers and through one process (its outputs under
    `local_name`, so the two runs do not share a folder): (LaunchResult, LocalResult)."""
    import copy

    from sid_ray.train.launcher import launch
    from sid_ray.train.local import run_local

    distributed = launch(config, show_progress=False)
    single = copy.deepcopy(config)
    single.name = local_name
    return distributed, run_local(single, log=None, write_config=False)


def assert_rows_match(distributed_rows, local_rows, keys, rel: float) -> None:
    """The Ray run's logged rows equal the single process's, iteration by iteration."""
    assert len(distributed_rows) == len(local_rows)
    for dist_row, local_row in zip(distributed_rows, local_rows, strict=True):
        assert dist_row["k"] == local_row["k"]
        for key in keys:
            assert dist_row[key] == pytest.approx(local_row[key], rel=rel, abs=1e-7), key


def generator_update_difference(config, export_dir, local_generator) -> float:
    """|dG_dist - dG_local| / |dG_local|: the exported generator's update against the single
    process's, both from the same initial copy."""
    import torch
    from safetensors.torch import load_file

    from sid_ray.models.registry import build_adapter

    def flat(state):
        return torch.cat([state[k].double().flatten() for k in sorted(state)])

    torch.manual_seed(config.train.seed)
    initial = flat(build_adapter(config).make_trainable_copy("generator").state_dict())
    update_local = flat(local_generator.state_dict()) - initial
    update_dist = flat(load_file(export_dir / "generator.safetensors")) - initial
    assert update_local.norm() > 0  # the generator did move
    return float((update_dist - update_local).norm() / update_local.norm())
