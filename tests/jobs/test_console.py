"""What a person sees: the quiet console of the jobs, its `--verbose`, and errors in full."""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from sid_ray.train import console as terminal

ROOT = Path(__file__).resolve().parents[2]
JOBS = ("demo.py", "distill.py", "distill_flux.py", "distill_sd35.py")
TABLE_LAST_ROW = "SiD student (K=4)            4"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def restored_filters():
    """The filters a test installs go again (the loggers are process-wide)."""
    with warnings.catch_warnings():
        loggers = [logging.getLogger(name) for name, _ in terminal.KNOWN_HARMLESS_LOG_RECORDS]
        before = [list(logger.filters) for logger in loggers]
        yield
        for logger, filters in zip(loggers, before, strict=True):
            logger.filters[:] = filters


def test_known_harmless_warnings_are_hidden_and_others_still_show(restored_filters):
    warnings.simplefilter("always")
    terminal.hide_known_warnings()
    terminal.hide_known_warnings()  # idempotent: the jobs and the worker hook may both run it
    emitted = [
        ("`torch.distributed.all_gather_into_tensor` is deprecated. Use ...", FutureWarning),
        ("barrier(): using the device under current context. You can ...", UserWarning),
        ("Already found a `peft_config` attribute in the model. This will ...", UserWarning),
        ("`torch.cuda.amp.autocast(args...)` is deprecated.", FutureWarning),
        ("barrier(): using the device under current context.", RuntimeWarning),
    ]
    with warnings.catch_warnings(record=True) as shown:
        for message, category in emitted:
            warnings.warn(message, category, stacklevel=1)
    assert [str(w.message) for w in shown] == [
        "`torch.cuda.amp.autocast(args...)` is deprecated.",  # another message
        "barrier(): using the device under current context.",  # another category
    ]


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_known_harmless_log_records_are_hidden_and_others_still_show(restored_filters):
    terminal.hide_known_warnings()
    logger, seen = logging.getLogger("DeepSpeed"), Collect()
    logger.addHandler(seen)
    try:
        logger.warning("Setting accelerator to CPU. If you have GPU or other accelerator, ...")
        logger.warning("zero_stage 3 with offload: something a user should read")
    finally:
        logger.removeHandler(seen)
    assert seen.messages == ["zero_stage 3 with offload: something a user should read"]


def test_quiet_keeps_worker_output_off_the_driver_and_verbose_keeps_rays_defaults():
    env = {"SID_RAY_CACHE": "/cache"}
    quiet = terminal.Console(verbose=False).ray_init_kwargs(env)
    assert quiet["log_to_driver"] is False and quiet["logging_level"] == logging.WARNING
    assert quiet["runtime_env"] == {
        "env_vars": env,
        "worker_process_setup_hook": "sid_ray.train.console.hide_known_warnings",
    }
    assert terminal.Console(verbose=True).ray_init_kwargs(env) == {"runtime_env": {"env_vars": env}}


@pytest.mark.parametrize("job", JOBS)
def test_every_job_documents_verbose(job):
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / job), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--verbose" in out.stdout and "hidden by default" in out.stdout


def run_in_terminal(cmd: list[str], timeout: float) -> tuple[int, str]:
    """Runs `cmd` with a pseudo-terminal as stdout and stderr, as `make demo` runs in a shell."""
    master, child_end = pty.openpty()
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=child_end, stderr=child_end, env=env)
    os.close(child_end)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:  # exited, and nothing more came within a second
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"{cmd} ran over {timeout} s")
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def screen_lines(text: str) -> list[str]:
    """The lines the terminal shows: a carriage return rewrites its line, so that counts once."""
    lines = []
    for raw in ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        segments = [s for s in raw.split("\r") if s]
        lines.append(segments[-1] if segments else "")
    return lines


def demo(tmp_path: Path, name: str, *flags: str) -> list[str]:
    """A short run of the README's demo, as a person runs it, seen on the terminal."""
    overrides = {
        "name": name,
        "output_dir": tmp_path,
        "train.total_kimg": 0.128,  # 4 iterations
        "train.log_every": 1,  # 4 progress rows: in a terminal, one line
        "train.checkpoint_every_kimg": 0.064,
        "eval.num_samples": 40,
        "tracking.mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    cmd = [sys.executable, str(ROOT / "jobs" / "demo.py"), *flags]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    rc, text = run_in_terminal(cmd, timeout=900)
    lines = screen_lines(text)
    assert rc == 0, "\n".join(lines[-60:])
    assert text.count("kimg    0.") >= 4  # every row was drawn
    return lines


@pytest.mark.slow
@pytest.mark.ray
def test_demo_prints_at_most_40_lines_to_the_table_and_verbose_prints_more(tmp_path):
    quiet = demo(tmp_path, "quiet")
    assert any(line.startswith("sampler") for line in quiet)
    to_table = next(i for i, line in enumerate(quiet) if line.startswith(TABLE_LAST_ROW)) + 1
    assert to_table <= 40, "\n".join(quiet)
    assert sum(line.startswith("kimg ") for line in quiet) == 1  # one progress line, rewritten
    assert any(line.startswith("sample grid:") for line in quiet)
    assert not any("Reporting training result" in line or "warning" in line.lower() for line in quiet)

    verbose = demo(tmp_path, "verbose", "--verbose")
    assert any(line.startswith(TABLE_LAST_ROW) for line in verbose)
    assert len(verbose) > len(quiet) + 20, "\n".join(verbose)
    assert any("Reporting training result" in line for line in verbose)  # the per-rank report dicts


FAILING_RUN = """
import sys
from sid_ray.train import console, launcher
from sid_ray.config import load_config

policy = console.setup(verbose=False)


def failing_loop(config):
    import ray.train

    if ray.train.get_context().get_world_rank() == 1:
        raise RuntimeError("deliberate failure inside worker rank 1")
    import time

    time.sleep(60)


launcher.train_loop_per_worker = failing_loop  # pickled by value: the workers run this one
launcher.launch(load_config("configs/demo_digits.yaml", sys.argv[1:]), console=policy)
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_failing_worker_prints_its_traceback_in_full_when_quiet(tmp_path):
    cmd = [sys.executable, "-c", FAILING_RUN, f"output_dir={tmp_path}", "train.max_failures=0"]
    cmd.append(f"tracking.mlflow_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode != 0
    for text in ("WorkerGroupError", "Rank 1", "in failing_loop", "deliberate failure inside worker rank 1"):
        assert text in out.stderr, out.stderr
