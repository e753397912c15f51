"""cluster/runtime_env.yaml and cluster/fetch_secret.py: what `ray job submit` uploads, and secrets."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from ray.runtime_env import RuntimeEnv

from tests.cluster.conftest import ROOT, load_yaml

SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")


def test_ray_accepts_the_runtime_env():
    runtime_env = load_yaml("cluster/runtime_env.yaml")
    parsed = RuntimeEnv(**runtime_env)  # Ray's own validation of every field
    assert parsed["working_dir"] == "."


def test_uploads_exclude_runs_venv_and_caches():
    excludes = load_yaml("cluster/runtime_env.yaml")["excludes"]
    for folder in ("runs/", ".venv/", ".git/", ".cache/", "**/__pycache__/"):
        assert folder in excludes


def test_env_vars_name_the_caches_and_tracking_and_hold_no_secret():
    env = load_yaml("cluster/runtime_env.yaml")["env_vars"]
    assert {"HF_HOME", "MLFLOW_TRACKING_URI"} <= set(env)
    # the launcher passes SID_RAY_CACHE to ray.init itself; a job runtime_env with it fails to merge
    assert "SID_RAY_CACHE" not in env
    assert not [name for name in env if any(word in name.upper() for word in SECRET_WORDS)]


def test_fetch_secret_writes_mode_600_and_prints_nothing_of_it(tmp_path):
    token = "planted-" + os.urandom(8).hex()
    source = tmp_path / "source"
    source.write_text(token + "\n")
    destination = tmp_path / "ray" / "auth_token"
    out = subprocess.run(
        [sys.executable, "cluster/fetch_secret.py", "file", str(source), "--to", str(destination)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert destination.read_text() == token
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    assert token not in out.stdout + out.stderr
