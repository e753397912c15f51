"""In-training evaluation in the single-process loop, and the divergence stop (shared with the
Ray worker through sid_ray.train.in_training_eval)."""

from __future__ import annotations

import math

import pytest

from sid_ray.config import load_config
from sid_ray.train.in_training_eval import divergence
from sid_ray.train.local import run_local


def digits_config(tmp_path, name: str, *overrides: str):
    """Two-iteration digits runs: global batch 32 on one process, evaluated every iteration."""
    return load_config(
        "configs/demo_digits.yaml",
        [
            f"name={name}",
            f"output_dir={tmp_path}",
            "train.num_workers=1",
            "train.log_every=1",
            "eval.num_samples=60",
            "eval.batch_size=20",
            "eval.every_kimg=0.032",
            "tracking.mlflow_uri=",
            *overrides,
        ],
    )


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"loss/fake": 1.0, "loss/generator": -2.0, "nan_dropped_samples": 0.0}, None),
        ({"loss/fake": math.nan, "loss/generator": 1.0}, "loss/fake is nan"),
        ({"loss/fake": 1.0, "loss/generator": -3e9}, "exceeds eval.max_loss"),
        ({"loss/fake": 1.0, "nan_dropped_samples": 32.0}, "every sample"),
        ({"loss/fake": 1.0, "eval_fid": math.inf}, "eval_fid is inf"),
        ({"loss/fake": 1.0, "eval_fid": 900.0}, "exceeds eval.max_fid"),
        ({"loss/fake": 1.0, "eval_fid": 90.0}, None),
    ],
)
def test_divergence_rule(row, expected):
    config = load_config(None, ["train.batch_size=32", "train.micro_batch_size=16", "eval.max_fid=500"])
    reason = divergence(row, config)
    assert (reason is None) if expected is None else (expected in reason)


def test_local_run_evaluates_every_eval_kimg(tmp_path):
    result = run_local(digits_config(tmp_path, "eval", "train.total_kimg=0.064"), log=None)
    assert not result.diverged
    evaluated = [row for row in result.history if "eval_fid" in row]
    assert [row["iteration"] for row in evaluated] == [1, 2]
    for row in evaluated:
        assert 0 < row["eval_fid"] < 1000 and 0 <= row["eval_prompted_digit_probability"] <= 100
        assert row["eval_num_samples"] == 60 and 0 < row["eval_share_of_wall"] < 1


def test_huge_learning_rate_is_stopped_as_diverged(tmp_path):
    config = digits_config(
        tmp_path, "diverge", "train.total_kimg=0.32", "optim.generator_lr=10", "optim.fake_lr=10"
    )
    result = run_local(config, log=None)
    assert "diverged" in result.diverged
    assert len(result.history) < 10  # stopped before the run's 10 iterations
    assert divergence(result.history[-1], config) is not None
