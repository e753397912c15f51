"""Teachers with a closed set of prompts (the toys) register them; the others leave data.prompts to the user."""

import pytest

from sid_ray.config import ConfigError, load_config
from sid_ray.models.registry import default_prompts
from sid_ray.train.local import run_local


def test_the_digits_teacher_prompts_are_the_demo_prompt_file():
    config = load_config(None, ["model.name=digits-flux"])
    with open("configs/prompts/digits.txt") as f:
        assert default_prompts(config.model) == [line.strip() for line in f if line.strip()]


def test_the_gaussian_mixture_prompts_follow_its_class_prior_plus_null_prompts():
    prompts = default_prompts(load_config(None, ["model.name=gmm-ring"]).model)
    assert {p for p in prompts if p} == {f"mode {c}" for c in range(8)}
    # prior 3:...:10 -> the commonest mode round(10/3) = 3 times per rarest; a fifth of the list is null
    assert prompts.count("mode 7") == 3 * prompts.count("mode 0")
    assert prompts.count("") == len([p for p in prompts if p]) // 4


def test_a_real_teacher_has_none_and_run_local_asks_for_prompts(tmp_path):
    config = load_config(None, ["model.name=flux-tiny", f"output_dir={tmp_path}"])
    assert default_prompts(config.model) is None
    with pytest.raises(ConfigError, match="no prompt list of its own"):
        run_local(config, log=None)


def test_an_unknown_teacher_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="registered: .*digits-flux"):
        default_prompts(load_config(None, ["model.name=digits-flux"]).model.__class__(name="flux-dve"))
