"""The data stage's CPUs: a run whose workers would starve the Ray Data stream is refused at
start (the 2-CPU head of issue 13), and the embedding job's command line."""

from __future__ import annotations

import pytest

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.train.data_resources import reserve_data_stage


def test_the_workers_must_leave_the_stream_a_cpu():
    config = load_config(None, ["train.num_workers=2", "train.batch_size=16"])
    with pytest.raises(ConfigError, match=r"cpus_per_worker=0\.5 or less"):
        reserve_data_stage(config, cluster_cpus=2)
    line = reserve_data_stage(config, cluster_cpus=3)
    assert line == "CPUs: 2 worker(s) x 1 + 1 for the data stream, of 3 in the cluster"
    config.train.cpus_per_worker = 0.5  # what configs/demo_digits.yaml does on a 2-core laptop
    assert reserve_data_stage(config, cluster_cpus=2)
    config.data.stream_cpus = 0  # an autoscaling cluster: nodes join after the check
    config.train.cpus_per_worker = 1
    assert reserve_data_stage(config, cluster_cpus=2)


@pytest.mark.ray
def test_launch_on_a_two_cpu_head_fails_at_start_instead_of_hanging(tmp_path, ray_local):
    from sid_ray.train.launcher import launch

    config = load_config(
        None,
        [f"output_dir={tmp_path}", "train.num_workers=2", "train.batch_size=16", "train.total_kimg=0.016"],
    )
    with pytest.raises(ConfigError, match="would wait forever"):
        launch(config, show_progress=False)
    assert not (tmp_path / config.name).exists()  # nothing started


@pytest.mark.ray
def test_embed_job_writes_a_cache_and_resumes(tmp_path, ray_local, capsys):
    from jobs.embed import main

    args = ["--set", "model.name=gmm-ring", "--set", f"data.embedding_cache={tmp_path / 'c'}"]
    assert main(args) == 0
    assert "training and 0 held-out prompts" in capsys.readouterr().out
    assert (tmp_path / "c" / "manifest.json").is_file()
    assert main(args) == 0
    assert "already written; encoding 0" in capsys.readouterr().out
    assert main([*args[:2], "--set", "data.embedding_cache="]) == 2
    assert "data.embedding_cache: empty" in capsys.readouterr().err
    assert main([*args, "--set", "data.prompts=missing.txt"]) == 2
    assert "missing.txt names no prompt file" in capsys.readouterr().err
