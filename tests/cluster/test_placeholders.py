"""A cluster file with a YOUR_* placeholder left cannot be launched unnoticed: cluster/check_config.py
names each field and what to put there, before `ray up` and again first thing on the head."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.cluster.conftest import CLUSTER, ROOT

sys.path.insert(0, str(CLUSTER))
import check_config  # noqa: E402  (cluster/ is a folder of files the nodes get, not a package)

VALUES = {
    "YOUR_ORG": "example-org",
    "YOUR_EFS_ID": "fs-0123456789abcdef0",
    "YOUR_GCP_PROJECT": "example-project",
    "YOUR_FILESTORE_IP": "10.0.0.2",
    "YOUR_REGISTRY": "registry.example.com/team",
}
FILES = ["cluster/aws-gpu.yaml", "cluster/gcp-gpu.yaml", "cluster/kuberay/raycluster.yaml"]


def test_every_shipped_placeholder_has_a_hint():
    for relative in [*FILES, "cluster/kuberay/rayjob.yaml"]:
        for name in check_config.PLACEHOLDER.findall((ROOT / relative).read_text()):
            assert name in check_config.WHAT_TO_PUT and name in VALUES, (relative, name)


@pytest.mark.parametrize("relative", FILES)
def test_placeholders_are_refused_naming_the_field_and_what_to_put(relative, tmp_path):
    problems = check_config.check_file(ROOT / relative)
    assert problems, f"{relative} ships no placeholder: update this test"
    for problem in problems:
        field, message = problem.split(": replace ", 1)
        name = message.split()[0]
        assert message == f"{name} with {check_config.WHAT_TO_PUT[name]}"
        assert field and " " not in field  # a YAML field path such as provider.project_id
    run = subprocess.run(
        [sys.executable, str(CLUSTER / "check_config.py"), str(ROOT / relative)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and problems[0] in run.stderr

    filled = (ROOT / relative).read_text()
    for name, value in VALUES.items():
        filled = filled.replace(name, value)
    (tmp_path / "filled.yaml").write_text(filled)
    assert check_config.check_file(tmp_path / "filled.yaml") == []
    assert check_config.main([str(tmp_path / "filled.yaml")]) == 0


@pytest.mark.parametrize("relative", ["cluster/aws-gpu.yaml", "cluster/gcp-gpu.yaml"])
def test_the_head_checks_the_config_ray_up_sent_it_before_any_setup(relative):
    config = yaml.safe_load((ROOT / relative).read_text())
    first = config["setup_commands"][0]
    assert "python /home/ray/cluster/check_config.py ~/ray_bootstrap_config.yaml" in first
    # what `ray up` writes to the head as ~/ray_bootstrap_config.yaml is the prepared config: the
    # placeholders are still in it, so the head's check refuses it
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert check_config.placeholders([prepared])


@pytest.mark.parametrize(
    ("relative", "filled_address"),
    [
        ("cluster/aws-gpu.yaml", "fs-0123456789abcdef0.efs.us-west-2.amazonaws.com:/"),
        ("cluster/gcp-gpu.yaml", "10.0.0.2:/runs"),
    ],
)
def test_the_shared_folder_mount_refuses_its_placeholder_before_mounting(relative, filled_address):
    """initialization_commands run on the host before the setup's check: the mount command
    checks its own address, so a placeholder left stops there with a message, not a DNS error."""
    command = yaml.safe_load((ROOT / relative).read_text())["initialization_commands"][0]
    left = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert left.returncode == 2 and "is still a placeholder" in left.stderr and relative in left.stderr
    filled = command
    for name, value in VALUES.items():
        filled = filled.replace(name, value)
    # the filled command, its privileged steps printed instead of run
    dry = filled.replace("sudo ", "echo ").replace("mountpoint -q /mnt/runs", "false")
    run = subprocess.run(["bash", "-c", dry], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "mount -t nfs" in run.stdout and filled_address in run.stdout
