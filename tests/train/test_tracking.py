"""Rank 0 logs to MLflow (sqlite store) when a tracking URI is set, and a resume reuses the run."""

from __future__ import annotations

import pytest

from sid_ray.train.launcher import launch
from tests.train.conftest import toy_config


@pytest.mark.ray
def test_rank0_logs_metrics_to_mlflow(ray_cluster, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = (
        "train.checkpoint_every_kimg=0.016",
        f"tracking.mlflow_uri={uri}",
        "tracking.experiment=sid-test",
    )
    launch(toy_config(tmp_path, "tracked", "train.total_kimg=0.016", *settings), show_progress=False)
    # the same run name again, longer: resumes, and keeps logging into the same MLflow run
    launch(toy_config(tmp_path, "tracked", "train.total_kimg=0.024", *settings), show_progress=False)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sid-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["train.num_workers"] == "2"
    history = client.get_metric_history(run.info.run_id, "loss_generator")
    assert [m.step for m in history] == [1, 2, 3]  # one value per logged iteration, no duplicates
    assert {"kimg", "img_per_s", "loss_fake"} <= set(run.data.metrics)


def test_relative_sqlite_uris_are_made_absolute(tmp_path, monkeypatch):
    from sid_ray.train.tracking import absolute_tracking_uri

    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///runs/mlflow.db") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert absolute_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert absolute_tracking_uri("") == ""
