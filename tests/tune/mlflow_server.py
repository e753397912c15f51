"""A real `mlflow server` on loopback for the tests that assert what a person sees in MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """Start `mlflow server` (sqlite store, proxied artifacts under `folder`); yields its URI."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    command = [
        str(mlflow_cli),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below)
    # its own session: the server forks job consumers (huey) that a plain terminate would orphan
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400  # minutes on a loaded 2-core machine
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError as err:
                if server.poll() is not None or time.monotonic() > deadline:
                    log_tail = (folder / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {log_tail}") from err
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the consumers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
