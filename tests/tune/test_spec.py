"""The sweep YAML: domains, tied keys, named guidance modes, and what is refused."""

from __future__ import annotations

import pytest
import yaml

from sid_ray.config.schema import ConfigError
from sid_ray.tune.spec import GUIDANCE_MODES, load_sweep, param_space, trial_overrides


def write(tmp_path, **spec) -> str:
    data = {"base": "configs/demo_digits.yaml", "set": ["train.total_kimg=0.128"], **spec}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_tied_fields_follow_and_named_modes_set_the_three_scales(tmp_path):
    space = {
        "optim.generator_lr": {"loguniform": [1e-5, 1e-3]},
        "optim.fake_lr": {"same_as": "optim.generator_lr"},
        "guidance_mode": {"choice": ["zero_cfg", "anti_cfg"]},
        "guidance_scale": {"value": 2.0},
    }
    spec = load_sweep(write(tmp_path, space=space))
    assert spec.name == "sweep" and set(param_space(spec)) == {
        "optim.generator_lr",
        "guidance_mode",
        "guidance_scale",
    }
    params = {"optim.generator_lr": 2e-4, "guidance_mode": "anti_cfg", "guidance_scale": 2.0}
    overrides = trial_overrides(spec, params)
    assert "optim.fake_lr=0.0002" in overrides and "optim.generator_lr=0.0002" in overrides
    assert overrides[-3:] == [
        "sid.teacher_guidance=1.0",
        "sid.fake_guidance_train=-2.0",
        "sid.fake_guidance_eval=-2.0",
    ]
    config = spec.base_config(overrides)  # the overrides load as a valid run config
    assert config.sid.fake_guidance_eval == -2.0 and config.optim.fake_lr == config.optim.generator_lr
    zero = trial_overrides(spec, {**params, "guidance_mode": "zero_cfg"})
    assert zero[-3:] == [f"{f}={v}" for f, v in zip(
        ("sid.teacher_guidance", "sid.fake_guidance_train", "sid.fake_guidance_eval"), GUIDANCE_MODES["zero_cfg"](2.0), strict=True
    )]  # fmt: skip


def test_guidance_searched_apart_passes_through(tmp_path):
    space = {"sid.teacher_guidance": {"uniform": [1, 3]}, "sid.fake_guidance_eval": {"uniform": [-1, 1]}}
    spec = load_sweep(write(tmp_path, space=space))
    assert trial_overrides(spec, {"sid.teacher_guidance": 2.5, "sid.fake_guidance_eval": -0.5}) == [
        "sid.teacher_guidance=2.5",
        "sid.fake_guidance_eval=-0.5",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"space": {"optim.nope": {"uniform": [0, 1]}}}, "no config field"),
        ({"space": {"optim.fake_lr": {"same_as": "optim.generator_lr"}}}, "not a key of the space"),
        ({"space": {"guidance_mode": {"choice": ["cfg", "super_cfg"]}}}, "unknown"),
        ({"space": {"sid.alpha": {"normal": [1, 0.1]}}}, "unknown domain"),
        ({"schedule": {}}, "unknown sweep keys"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        param_space(load_sweep(write(tmp_path, **extra)))


def test_asha_rungs_lie_below_the_runs_end(tmp_path):
    """A trial that trained to the end is never stopped there (its export and MLflow run would
    be cut short): the rungs are the grace period's multiples below total_kimg."""
    from sid_ray.tune.sweep import _scheduler

    spec = load_sweep(write(tmp_path, space={}, scheduler={"grace_kimg": 0.032, "reduction_factor": 2}))
    scheduler = _scheduler(spec, total_kimg=0.128)
    milestones = sorted(m for m, _ in scheduler._brackets[0]._rungs)  # Ray 2.60's ASHA bookkeeping
    assert milestones == pytest.approx([0.032, 0.064])
    assert not scheduler._stop_last_trials
