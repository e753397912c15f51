"""The README's `ray job submit --runtime-env cluster/runtime_env.yaml` against a local head with
token authentication: refused without the token, a stopped job resumed by submitting it again,
and secrets in the cluster's environment never reaching a log, the run folder or MLflow.

The head runs with RAY_AUTH_MODE=token and a test-only token, plus a planted HF_TOKEN and AWS
secret key in its environment (what every job and worker inherits on a cluster node). The
runtime_env is the shipped file with HF_HOME moved under this test's temporary folder (the
shipped one is a /home/ray path of the cluster image); working_dir and excludes are as shipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.cluster.conftest import ROOT, load_yaml

RAY = str(Path(sys.executable).parent / "ray")
ENDED = ("STOPPED", "FAILED", "SUCCEEDED", "stopped", "failed", "succeeded")
PLANTED = {
    "HF_TOKEN": "hf_planted" + secrets.token_hex(12),
    "AWS_SECRET_ACCESS_KEY": "planted" + secrets.token_hex(12),
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(head: subprocess.Popen) -> None:
    """Stop the head and everything it started: its own process group (start_new_session)."""
    children = psutil.Process(head.pid).children(recursive=True)
    head.send_signal(signal.SIGTERM)  # --block: `ray start` stops the processes it started
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:  # what ignored SIGTERM, by the group id of the head this fixture started
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for proc in children:  # and any child that left the group
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def secured_head():
    """(dashboard address, the submitter's env, the head's Ray temp folder)."""
    token = secrets.token_hex(16)
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, **PLANTED}
    env.pop("RAY_ADDRESS", None)
    dashboard = _free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={_free_port()}", f"--dashboard-port={dashboard}"]
        + ["--dashboard-host=127.0.0.1", "--num-cpus=4", f"--temp-dir={temp_dir}"]
        # every port its own: other Ray instances on this machine hold the defaults (52365, ...)
        + [f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"]
        + [f"--dashboard-agent-grpc-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]
        + [f"--metrics-export-port={_free_port()}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    submitter = {k: v for k, v in env.items() if k not in PLANTED}
    deadline = time.time() + 180
    while subprocess.run(
        [RAY, "job", "list", f"--address={address}"], env=submitter, capture_output=True
    ).returncode:
        assert head.poll() is None and time.time() < deadline, "the Ray head did not come up"
        time.sleep(2)
    yield address, submitter, Path(temp_dir)
    _stop(head)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _runtime_env(tmp_path: Path) -> Path:
    runtime_env = load_yaml("cluster/runtime_env.yaml")
    runtime_env["env_vars"].update(HF_HOME=str(tmp_path / "hf"))
    path = tmp_path / "runtime_env.yaml"
    path.write_text(yaml.safe_dump(runtime_env))
    return path


def _ray_job(address: str, env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`ray job <args>` against `address`; a submission is retried while the head's job agent is
    still starting (the jobs API answers before the agent takes jobs)."""
    deadline = time.time() + 120
    while True:
        out = subprocess.run(
            [RAY, "job", args[0], f"--address={address}", *args[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if "No available agent" not in out.stderr or time.time() > deadline:
            return out
        time.sleep(3)


def _status(address: str, env: dict, job_id: str) -> str:
    out = _ray_job(address, env, "status", job_id)
    return out.stdout + out.stderr  # the CLI prints the status through its logger, on stderr


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@pytest.mark.ray
@pytest.mark.slow
def test_submit_stop_resume_with_runtime_env_and_no_secret_leaks(secured_head, tmp_path):
    from sid_ray.models.tiny.flux import build_tiny_flux

    address, env, ray_temp = secured_head
    teacher = build_tiny_flux(tmp_path / "teacher")
    runtime_env = _runtime_env(tmp_path)
    # the README's `python`, as this interpreter (a cluster image has one python; this machine several)
    job = [sys.executable, "jobs/distill_flux.py", "--config", "configs/flux_tiny.yaml", "--quiet"]
    job += [
        "--set",
        f"model.path={teacher}",
        "--set",
        f"output_dir={tmp_path / 'runs'}",
        "--set",
        "name=stopped",
    ]
    job += [
        "--set",
        "train.total_kimg=0.06",
        "--set",
        f"tracking.mlflow_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]

    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"} | {"HOME": str(tmp_path)}
    refused = _ray_job(address, no_token, "submit", "--runtime-env", str(runtime_env), "--", *job)
    assert refused.returncode != 0
    assert any(word in refused.stdout + refused.stderr for word in ("401", "Unauthorized", "token")), (
        refused.stderr
    )

    first = _ray_job(
        address,
        env,
        "submit",
        "--submission-id",
        "first",
        "--no-wait",
        "--runtime-env",
        str(runtime_env),
        "--",
        *job,
    )
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs" / "stopped"

    def checkpoint_or_ended() -> bool:
        status = _status(address, env, "first")
        return any(run.glob("checkpoint_*")) or any(end in status for end in ENDED)

    _wait_for(checkpoint_or_ended, 900, "the first checkpoint")
    assert any(run.glob("checkpoint_*")), _ray_job(address, env, "logs", "first").stdout[-5000:]
    assert _ray_job(address, env, "stop", "first").returncode == 0
    # ended: the stopped driver reports the run as failed ("run failed: kimg ...")
    _wait_for(lambda: any(end in _status(address, env, "first") for end in ENDED), 300, "the stop")

    second = _ray_job(
        address, env, "submit", "--submission-id", "second", "--runtime-env", str(runtime_env), "--", *job
    )
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    output = _ray_job(address, env, "logs", "second").stdout  # the whole log (the stream may end early)
    assert "run finished: kimg 0.060/0.06" in output and "resumes 1" in output, output[-3000:]

    logs = _ray_job(address, env, "logs", "first").stdout + output
    files = [p for folder in (ray_temp, tmp_path / "runs") for p in folder.rglob("*") if p.is_file()]
    files.append(tmp_path / "mlflow.db")
    for secret in PLANTED.values():
        assert secret not in logs
        leaked = [str(f) for f in files if secret.encode() in f.read_bytes()]
        assert not leaked, leaked
