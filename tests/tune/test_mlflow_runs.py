"""A sweep's MLflow runs are found again, not duplicated, and the runs its trials left open are
closed as the trials ended."""

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
    third = mlflow_runs.trial_run(uri, parent, "abc_00002", "trial_2", {"lr": 1e-1})
    # stopped by ASHA, but its worker's MLflow exit hook closed the run as FINISHED first
    fourth = mlflow_runs.trial_run(uri, parent, "abc_00003", "trial_3", {"lr": 3e-3})
    fifth = mlflow_runs.trial_run(uri, parent, "abc_00004", "trial_4", {"lr": 2e-3})
    assert len({first, second, third, fourth, fifth}) == 5
    client = mlflow.MlflowClient(uri)
    client.set_terminated(second, "FINISHED")
    client.set_terminated(fourth, "FINISHED")
    client.log_metric(fifth, "kimg", 0.128)
    client.set_terminated(fifth, "FINISHED")
    trials = [
        {"run_id": first, "status": "stopped early", "metrics": {"kimg": 0.064}},
        {"run_id": second, "status": "completed", "metrics": {"kimg": 0.128}},
        {"run_id": third, "status": "diverged", "reason": "loss/fake is nan", "metrics": {"kimg": 0.032}},
        {"run_id": fourth, "status": "stopped early", "metrics": {"kimg": 0.064}},
        {"run_id": fifth, "status": "stopped early", "metrics": {"kimg": 0.064}},
    ]
    mlflow_runs.close_trials(uri, trials, total_kimg=0.128)
    runs = {r.info.run_id: r for r in mlflow_runs.trial_runs(uri, parent)}
    assert set(runs) == {first, second, third, fourth, fifth}
    assert runs[first].info.status == "KILLED" and "0.064 of 0.128" in runs[first].data.tags["stopped_early"]
    assert runs[second].info.status == "FINISHED" and "stopped_early" not in runs[second].data.tags
    assert runs[third].info.status == "FAILED" and runs[third].data.tags["diverged"] == "true"
    assert runs[third].data.tags["diverged_reason"] == "loss/fake is nan"
    assert runs[fourth].info.status == "KILLED" and "stopped_early" in runs[fourth].data.tags
    # stopped by ASHA after its workers had logged the last kimg and finished: it finished
    assert (
        runs[fifth].info.status == "FINISHED"
        and "after its workers had finished" in runs[fifth].data.tags["stopped_early"]
    )
