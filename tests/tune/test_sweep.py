"""Sweeps end to end: jobs/sweep.py on a local Ray cluster logging to a real `mlflow server`.

Four 4-iteration trials of the digits teacher over a learning-rate grid, one at a time on a
2-CPU cluster (each trial's 2 workers x 0.5 CPU and its data stream's CPU take it all): the
lowest rate first, so the later, worse trials meet ASHA's cutoff at the first rung (0.064 kimg),
and the highest one's FID (~1050 there) passes `eval.max_fid`, so that trial stops as diverged.
And a sweep whose driver is killed mid-way, run again, finishing with one MLflow run per trial.
About 6 and 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.tune.mlflow_server import mlflow_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def sweep_yaml(tmp_path: Path, uri: str, name: str, lrs: list[float], extra: tuple[str, ...] = ()) -> Path:
    spec = {
        "name": name,
        "base": str(ROOT / "configs" / "demo_digits.yaml"),
        "set": [
            "train.total_kimg=0.128",
            "train.checkpoint_every_kimg=0.064",
            "train.log_every=2",
            "eval.every_kimg=0.064",
            "eval.num_samples=100",
            f"tracking.mlflow_uri={uri}",
            f"tracking.experiment={name}",
            *extra,
        ],
        "space": {
            "optim.generator_lr": {"grid": lrs},
            "optim.fake_lr": {"same_as": "optim.generator_lr"},
        },
        "scheduler": {"grace_kimg": 0.064, "reduction_factor": 2},
        "output_dir": str(tmp_path / "sweeps"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_sweep(path: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # its own local cluster, always
        env.pop(key, None)
    command = [sys.executable, str(ROOT / "jobs" / "sweep.py"), str(path), "--num-cpus", "2"]
    with open(log, "a") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def runs_of(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    parents = [r for r in runs if r.data.tags.get("sid_ray.kind") == "sweep"]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, trials


def test_four_trial_sweep_stops_one_early_and_reports_the_best(tmp_path, server):
    path = sweep_yaml(tmp_path, server, "sweep4", [1e-7, 1e-3, 3e-3, 1e-2], ("eval.max_fid=400",))
    started = time.monotonic()
    process = start_sweep(path, tmp_path / "sweep.log")
    assert process.wait(timeout=1800) == 0, (tmp_path / "sweep.log").read_text()[-5000:]
    output = (tmp_path / "sweep.log").read_text()
    print(f"4-trial sweep: {time.monotonic() - started:.0f} s\n{output}")
    assert "holds 1 at once; running 1 at a time" in output  # the trials' data streams counted
    assert "best trial" in output and "trials plot" in output
    assert "stopped early by ASHA at kimg 0.064" in output and " diverged " in output

    client, parents, trials = runs_of(server, "sweep4")
    assert len(parents) == 1 and len(trials) == 4
    parent = parents[0]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    by_lr = {float(t.data.params["optim.generator_lr"]): t for t in trials}
    diverged = by_lr[1e-2]
    for trial in trials:
        assert "eval_fid" in trial.data.metrics and "loss_generator" in trial.data.metrics
        assert trial.info.status != "RUNNING"
        # every evaluation's grid, the diverged trial's last one included
        grids = client.list_artifacts(trial.info.run_id, "eval/grids")
        assert grids and all(g.path.endswith(".png") for g in grids), trial.info.run_name
    assert diverged.info.status == "FAILED" and diverged.data.tags["diverged"] == "true"
    assert "eval.max_fid" in diverged.data.tags["diverged_reason"]
    stopped = [t for t in trials if "stopped_early" in t.data.tags]
    assert stopped and diverged not in stopped
    for trial in stopped:  # a 4-iteration trial's workers may finish before ASHA's stop reaches them
        finished = trial.data.metrics["kimg"] >= 0.128
        assert trial.info.status == ("FINISHED" if finished else "KILLED"), trial.data.tags["stopped_early"]
        assert finished == ("after its workers had finished" in trial.data.tags["stopped_early"])
    assert by_lr[1e-7].info.status == "FINISHED" and by_lr[1e-7].data.metrics["kimg"] == pytest.approx(0.128)
    # the best: the finished trial with the lowest final FID, named on the parent run
    best_id = parent.data.tags["best_run_id"]
    finals = {t.info.run_id: t.data.metrics["eval_fid"] for t in trials if t.data.metrics["kimg"] >= 0.128}
    assert best_id == min(finals, key=finals.get) == by_lr[1e-7].info.run_id
    assert parent.data.metrics["best_eval_fid"] == pytest.approx(finals[best_id])
    assert "optim.generator_lr" in parent.data.tags["best_config"] and parent.data.tags["best_checkpoint"]
    assert parent.info.status == "FINISHED"
    assert any(a.path == "trials.png" for a in client.list_artifacts(parent.info.run_id))
    assert (tmp_path / "sweeps" / "sweep4" / "trials.png").stat().st_size > 0


def test_killed_sweep_resumes_without_duplicate_runs(tmp_path, server):
    path = sweep_yaml(tmp_path, server, "resumed", [1e-7, 1e-3])
    log = tmp_path / "sweep.log"
    started = time.monotonic()
    process = start_sweep(path, log)
    deadline = time.monotonic() + 900
    while True:  # kill the driver once a trial has reported its first evaluation
        _, _, trials = runs_of(server, "resumed")
        if any("eval_fid" in t.data.metrics for t in trials):
            break
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and what it started (its local Ray cluster)
    process.wait(timeout=60)
    time.sleep(5)
    _, _, before = runs_of(server, "resumed")
    assert len(before) == 1 and before[0].info.status == "RUNNING"  # killed mid-trial

    process = start_sweep(path, log)
    assert process.wait(timeout=1800) == 0, log.read_text()[-5000:]
    output = log.read_text()
    print(f"killed and resumed sweep: {time.monotonic() - started:.0f} s\n{output}")
    assert "resuming sweep resumed" in output
    _, parents, trials = runs_of(server, "resumed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [t.data.tags["sid_ray.trial_id"] for t in trials]
    assert len(trials) == 2 and len(set(trial_ids)) == 2  # one run per trial, none duplicated
    assert all(t.info.status in ("FINISHED", "KILLED") for t in trials)
    first = next(t for t in trials if t.info.run_id == before[0].info.run_id)  # the killed trial's run
    assert first.info.status == "FINISHED" and first.data.metrics["kimg"] == pytest.approx(0.128)
