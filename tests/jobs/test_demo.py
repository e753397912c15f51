"""The README's demo, end to end on a very short run (slow: Ray + DeepSpeed + evaluation)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_demo_trains_evaluates_and_logs_to_mlflow(tmp_path):
    db = tmp_path / "mlflow.db"
    cmd = [
        sys.executable,
        str(ROOT / "jobs" / "demo.py"),
        "--set",
        "name=demo-test",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "train.total_kimg=0.128",
        "--set",
        "train.checkpoint_every_kimg=0.064",
        "--set",
        "eval.num_samples=40",
        "--set",
        f"tracking.mlflow_uri=sqlite:///{db}",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for row in (
        "teacher Euler               32",
        "teacher Euler                4",
        "teacher ancestral           32",
        "SiD student (K=4)            1",
        "SiD student (K=4)            4",
    ):
        assert row in out
    run_dir = tmp_path / "demo-test"
    assert (run_dir / "eval" / "samples_grid.png").stat().st_size > 1000
    assert (run_dir / "eval" / "quality_vs_kimg.png").stat().st_size > 1000
    assert (run_dir / "export" / "pipeline" / "model_index.json").is_file()

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "sid_ray-demo"]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert "loss_generator" in metrics and "eval_SiD_student_4step_fid" in metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "eval")}
    assert {"eval/samples_grid.png", "eval/quality_vs_kimg.png"} <= artifacts
