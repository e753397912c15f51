"""How many trials run at once: each trial's workers and its data stream must fit side by side,
and a sweep of which not even one trial fits is refused before it starts (not left to hang)."""

from __future__ import annotations

import pytest

from sid_ray.config.io import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.tune.resources import concurrent_trials


def config(*overrides: str):
    return load_config("configs/demo_digits.yaml", list(overrides))


def test_trials_at_once_count_each_trials_data_stream():
    # 2 workers x 0.5 CPU + 1 CPU for the stream = 2 CPUs a trial
    assert concurrent_trials(config(), cpus=2, gpus=0)[0] == 1
    at_once, line = concurrent_trials(config(), cpus=7, gpus=0)
    assert at_once == 3 and "= 2 CPU" in line and "holds 3 at once; running 3 at a time" in line
    assert concurrent_trials(config(), cpus=8, gpus=0, most=2)[0] == 2  # the spec's cap
    gpu = config("train.use_gpu=true", "train.gpus_per_worker=1", "train.cpus_per_worker=1")
    assert concurrent_trials(gpu, cpus=64, gpus=8)[0] == 4  # 8 GPUs, 2 a trial
    # data.stream_cpus=0 (an autoscaling cluster): nothing counted, the cap or one at a time
    assert concurrent_trials(config("data.stream_cpus=0"), cpus=0, gpus=0)[0] == 1


def test_a_sweep_whose_trial_cannot_fit_is_refused():
    with pytest.raises(ConfigError, match="Ray Data stream feeding the workers would wait forever"):
        concurrent_trials(config("train.cpus_per_worker=1"), cpus=2, gpus=0)
    gpu = config("train.use_gpu=true", "train.gpus_per_worker=1")
    with pytest.raises(ConfigError, match="need 2 GPUs, the cluster has 1"):
        concurrent_trials(gpu, cpus=16, gpus=1)
