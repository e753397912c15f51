"""`ray job submit` of jobs/distill_flux.py to a head with token authentication, and the CLI."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_options_and_exits_0():
    out = subprocess.run(
        [sys.executable, "jobs/distill_flux.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for option in ("--config", "--set", "--quiet", "train.num_workers", "train.zero_stage", "model.path"):
        assert option in out.stdout


def test_missing_teacher_fails_fast_naming_it(tmp_path):
    missing = tmp_path / "no-such-teacher"
    start = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "jobs/distill_flux.py",
            "--config",
            "configs/flux_tiny.yaml",
            "--set",
            f"model.path={missing}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert out.returncode == 2
    assert str(missing) in out.stderr and "model.path" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.time() - start < 60  # no Ray cluster was started


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """A Ray head with RAY_AUTH_MODE=token and a test-only token (never ~/.ray/auth_token)."""
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    dashboard = _free_port()
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            f"--port={_free_port()}",
            f"--dashboard-port={dashboard}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=4",
            "--include-dashboard=true",
            f"--ray-client-server-port={_free_port()}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 180
    while subprocess.run(
        [RAY, "job", "list", f"--address={address}"], env=env, capture_output=True
    ).returncode:
        assert head.poll() is None and time.time() < deadline, "the Ray head did not come up"
        time.sleep(2)
    yield address, env
    children = psutil.Process(head.pid).children(recursive=True)
    head.send_signal(signal.SIGTERM)  # --block: `ray start` stops the processes it started
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
    for proc in children:  # whatever it left behind, by pid
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    from sid_ray.models.tiny.flux import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("teachers") / "flux")


def _submit(address: str, env: dict, *job_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            RAY,
            "job",
            "submit",
            f"--address={address}",
            "--working-dir",
            ".",
            "--",
            sys.executable,
            "jobs/distill_flux.py",
            *job_args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.ray
@pytest.mark.slow
def test_job_submit_with_token_auth(token_head, tiny_flux, tmp_path):
    address, env = token_head
    common = ["--config", "configs/flux_tiny.yaml", "--set", f"output_dir={tmp_path}", "--quiet"]

    # the head enforces the token: without it the submission is refused
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    no_token["HOME"] = str(tmp_path)  # so no ~/.ray/auth_token is found either
    refused = _submit(address, no_token, *common, "--set", f"model.path={tiny_flux}")
    assert refused.returncode != 0

    done = _submit(address, env, *common, "--set", f"model.path={tiny_flux}", "--set", "name=submitted")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "run finished: kimg 0.008/0.008" in done.stdout + done.stderr
    assert (tmp_path / "submitted" / "export" / "pipeline" / "model_index.json").is_file()

    missing = tmp_path / "missing-teacher"
    start = time.time()
    failed = _submit(address, env, *common, "--set", f"model.path={missing}", "--set", "name=missing")
    assert failed.returncode != 0
    assert str(missing) in failed.stdout + failed.stderr
    assert time.time() - start < 120
