"""The typed config tree: YAML round trip, strict keys, typed --set overrides, named errors."""

import dataclasses
from pathlib import Path

import pytest

from sid_ray.config import ConfigError, RunConfig, dump_config, from_dict, load_config
from sid_ray.config.fields import field_doc

ROOT = Path(__file__).resolve().parents[2]


def _all_fields(cls, prefix=""):
    for f in dataclasses.fields(cls):
        yield f"{prefix}{f.name}", f
        section = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(section):
            yield from _all_fields(section, f"{prefix}{f.name}.")


def test_every_field_has_a_docstring():
    names = []
    for name, f in _all_fields(RunConfig):
        assert field_doc(f), f"config field {name} has no docstring"
        names.append(name)
    assert "train.micro_batch_size" in names and "model.lora.rank" in names


def test_yaml_round_trip(tmp_path):
    config = load_config(None, ["sid.teacher_guidance=4.5", "model.lora.target_modules=[to_q,to_k]"])
    path = dump_config(config, tmp_path / "c.yaml")
    assert load_config(path) == config


def test_unknown_keys_list_the_valid_ones(tmp_path):
    (tmp_path / "bad.yaml").write_text("sid:\n  num_step: 4\n")
    with pytest.raises(ConfigError, match=r"sid: unknown key\(s\) \['num_step'\]; valid keys: .*'num_steps'"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="unknown key 'lr'"):
        load_config(None, ["optim.lr=1e-4"])


def test_overrides_are_parsed_to_the_field_type():
    c = load_config(
        None,
        [
            "train.batch_size=32",
            "optim.fake_lr=3e-5",
            "train.use_gpu=true",
            "sid.rollout_noise=ddim",
            "train.zero_stage=2",
            "name=my-run",
        ],
    )
    assert c.train.batch_size == 32 and isinstance(c.train.batch_size, int)
    assert c.optim.fake_lr == 3e-5 and c.train.use_gpu is True
    assert c.sid.rollout_noise == "ddim" and c.train.zero_stage == 2 and c.name == "my-run"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=abc", "train.batch_size: expected an integer"),
        ("train.use_gpu=maybe", "train.use_gpu: expected true or false"),
        (
            "sid.rollout_noise=random",
            r"sid.rollout_noise: 'random' is not one of \['fresh', 'fixed', 'ddim'\]",
        ),
        ("sid.weighting=1-t^3", "sid.weighting: unknown '1-t\\^3'"),
        (
            "train.batch_size=100",
            "train.batch_size: 100 is not a multiple of micro_batch_size x num_workers = 8",
        ),
        ("tracking.mlflow_uri=./mlruns", "tracking.mlflow_uri: MLflow's file store is not supported"),
        ("optim.generator_lr=0", "optim.generator_lr: must be positive"),
        (
            "model.checkpoint_trained_share=1.5",
            r"model.checkpoint_trained_share: must be in \[0, 1\], got 1.5",
        ),
        (
            "sid.earlier_steps_gradient=-0.1",
            r"sid.earlier_steps_gradient: must be in \[0, 1\], got -0.1",
        ),
        ("sid.rollout_time_shift=0", "sid.rollout_time_shift: must be positive, got 0"),
        ("sid", "expected dotted.path=value"),
        ("model=x", "is a section"),
    ],
)
def test_validation_errors_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_files_get_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(tmp_path / "list.yaml")


def test_from_dict_checks_types():
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        from_dict({"train": 3})
    assert from_dict({}) == RunConfig()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    assert isinstance(load_config(path), RunConfig)
