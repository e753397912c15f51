"""cluster/README.md: its sizing table is `jobs/plan.py --table`'s output, and its job commands
name files that exist and settings that fit."""

from __future__ import annotations

import re

from tests.cluster.conftest import ROOT, config_of, job_arguments

README = (ROOT / "cluster/README.md").read_text()


def _table_in_readme() -> str:
    return README.split("<!-- plan-table:start -->\n", 1)[1].split("\n<!-- plan-table:end -->", 1)[0]


def test_sizing_table_is_plans_output():  # ~13 s: 10 architectures built on the meta device
    from sid_ray.config import load_config
    from sid_ray.train.memory_report import sizing_table

    base = load_config(ROOT / "configs/flux_dev.yaml")
    assert _table_in_readme() == sizing_table(base, [(512, 4), (1024, 2)], [80.0, 140.0])


def test_sizing_table_has_every_sized_teacher_mode_and_shape():
    from sid_ray.train.memory_report import MODES, sized_teachers

    rows = re.findall(r"^\| [\w.-]+ \| (?:full|lora|shared_base) \|", _table_in_readme(), re.MULTILINE)
    teachers = sized_teachers()
    assert {"flux-dev", "sd35-large", "sd35-medium", "sd3-medium", "sana-600m", "sana-1600m"} <= set(teachers)
    assert len(rows) == len(teachers) * len(MODES) * 2


def test_quickstart_job_names_existing_files_and_fits_its_gpus():
    from sid_ray.train.memory_plan import check_fits

    block = README.split("ray job submit --submission-id flux-dev-1", 1)[1].split("```", 1)[0]
    command = "ray job submit" + block.replace("\\\n", " ").replace("$HEAD_IP", "10.0.0.1")
    runtime_env = re.search(r"--runtime-env (\S+)", command).group(1)
    assert (ROOT / runtime_env).is_file()
    arguments = job_arguments(command)
    assert (ROOT / arguments[0]).is_file()
    config = config_of(arguments)
    assert config.train.use_gpu and check_fits(config) is not None


def test_every_repository_path_in_the_readme_exists():
    paths = set(re.findall(r"`((?:cluster|jobs|configs|sid_ray|tests|scripts|benchmarks)/[\w./-]+)`", README))
    assert paths
    for path in paths:
        assert (ROOT / path.rstrip(".")).exists(), path
