"""cluster/aws-gpu.yaml and cluster/gcp-gpu.yaml: Ray's own validation and what the issue asks of them."""

from __future__ import annotations

import copy
import re
import sys

import pytest
import ray
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.cluster.conftest import ROOT, SHA, is_commit_of_this_repository, load_yaml

LAUNCHER_YAMLS = ["cluster/aws-gpu.yaml", "cluster/gcp-gpu.yaml"]
GPU_TYPES = {"h100-ondemand", "h100-spot", "a100-ondemand", "a100-spot"}


@pytest.fixture(params=LAUNCHER_YAMLS)
def launcher(request) -> tuple[str, dict]:
    return request.param, load_yaml(request.param)


def test_rays_validation_accepts_the_prepared_config(launcher):
    _, config = launcher
    prepared = prepare_config(copy.deepcopy(config))  # merged with the provider's defaults.yaml
    validate_config(prepared)
    assert prepared["head_node_type"] == "head-cpu"


def test_cpu_head_and_autoscaling_gpu_types_on_demand_and_spot(launcher):
    name, config = launcher
    types = config["available_node_types"]
    assert set(types) == {"head-cpu", *GPU_TYPES}
    assert config["idle_timeout_minutes"] > 0
    for gpu_type in GPU_TYPES:
        assert types[gpu_type]["min_workers"] == 0 and types[gpu_type]["max_workers"] >= 1
    node = {t: str(types[t]["node_config"]) for t in types}
    spot = "MarketType': 'spot" if "aws" in name else "provisioningModel': 'SPOT"
    assert all((spot in node[t]) == t.endswith("-spot") for t in GPU_TYPES)
    machines = {
        "aws": ("m6i", "p5.48xlarge", "p4de.24xlarge"),
        "gcp": ("n2-standard", "a3-highgpu-8g", "a2-ultragpu-8g"),
    }
    head, h100, a100 = machines["aws" if "aws" in name else "gcp"]
    assert head in node["head-cpu"]
    assert all(h100 in node[t] for t in ("h100-ondemand", "h100-spot"))
    assert all(a100 in node[t] for t in ("a100-ondemand", "a100-spot"))


def test_image_is_pinned_to_our_ray_and_python(launcher):
    _, config = launcher
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{python}-gpu"
    assert f"ray[default,train,data,tune]=={ray.__version__}" in (ROOT / "pyproject.toml").read_text()


def test_setup_installs_the_project_at_a_pinned_commit(launcher):
    _, config = launcher
    setup = " ".join(config["setup_commands"])
    refs = SHA.findall(setup)
    assert refs and all(is_commit_of_this_repository(ref) for ref in refs)
    deepspeed = re.search(r"deepspeed==[0-9.]+", (ROOT / "Makefile").read_text()).group(0)
    assert deepspeed in setup


def test_token_auth_on_every_node_and_dashboard_on_loopback(launcher):
    _, config = launcher
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    # the token comes from the secret store into Ray's default token file, not from this file
    assert "fetch_secret.py" in " ".join(config["setup_commands"])
    assert "RAY_AUTH_TOKEN=" not in str(config)


def test_every_local_path_they_name_exists(launcher):
    _, config = launcher
    for local in config["file_mounts"].values():
        assert (ROOT / local).exists(), local
    for remote, local in config["file_mounts"].items():
        for word in " ".join(config["setup_commands"]).split():
            if word.startswith(remote + "/"):
                assert (ROOT / local / word[len(remote) + 1 :]).is_file(), word
