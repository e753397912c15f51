"""A sweep's MLflow runs are found again, not duplicated, and stopped trials are closed."""

from __future__ import annotations

from sid_ray.tune import mlflow_runs


def test_parent_and_trial_runs_are_reused_and_closed(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = mlflow_runs.parent_run(uri, "sweeps", tmp_path / "sweep", "s", "space: {}")
    assert mlflow_runs.parent_run(uri, "sweeps", tmp_path / "sweep", "s", "space: {}") == parent
    first = mlflow_runs.trial_run(uri, parent, "abc_00000", "trial_0", {"lr": 1e-4})
    assert mlflow_runs.trial_run(uri, parent, "abc_00000", "trial_0", {"lr": 1e-4}) == first
    second = mlflow_runs.trial_run(uri, parent, "abc_00001", "trial_1", {"lr": 1e-3})
    assert second != first
    client = mlflow.MlflowClient(uri)
    client.log_metric(first, "kimg", 0.064)
    client.set_terminated(second, "FINISHED")
    mlflow_runs.close_stopped_trials(uri, parent, total_kimg=0.128)
    runs = {r.info.run_id: r for r in mlflow_runs.trial_runs(uri, parent)}
    assert set(runs) == {first, second}
    assert runs[first].info.status == "KILLED" and "0.064 of 0.128" in runs[first].data.tags["stopped_early"]
    assert runs[second].info.status == "FINISHED" and "stopped_early" not in runs[second].data.tags
