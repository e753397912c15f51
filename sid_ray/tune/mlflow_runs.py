"""The MLflow side of a sweep: one parent run, one nested run per trial, found again on resume.

The parent's id is kept in the sweep folder and each trial's run is found by its Tune trial id
(a tag), so a sweep stopped and started again logs into the runs it had, never into new ones.
Trials that Tune stopped (ASHA) leave no chance to close their run from inside; the sweep closes
them at its end, tagged with why (`close_trials`).
"""

from __future__ import annotations

import json
from pathlib import Path

from sid_ray.config.schema import RunConfig

PARENT_ID_FILE = "mlflow_parent_run_id"
TRIAL_TAG = "sid_ray.trial_id"
PARENT_TAG = "mlflow.parentRunId"


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def parent_run(uri: str, experiment: str, sweep_dir: Path, name: str, spec_text: str) -> str:
    """The sweep's parent run: the one this folder recorded, else a new one."""
    client = _client(uri)
    saved = sweep_dir / PARENT_ID_FILE
    if saved.is_file():
        return saved.read_text().strip()
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    run = client.create_run(experiment_id, run_name=name, tags={"sid_ray.kind": "sweep"})
    client.log_text(run.info.run_id, spec_text, "sweep.yaml")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(run.info.run_id)
    return run.info.run_id


def trial_run(uri: str, parent_id: str, trial_id: str, trial_name: str, params: dict) -> str:
    """The trial's nested run: found by its trial id under the parent, else created (empty: the
    workers' rank 0 logs the resolved config into it)."""
    client = _client(uri)
    parent = client.get_run(parent_id)
    query = f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_id}'"
    found = client.search_runs([parent.info.experiment_id], filter_string=query)
    if found:
        return found[0].info.run_id
    tags = {
        PARENT_TAG: parent_id,
        TRIAL_TAG: trial_id,
        "sid_ray.trial_params": json.dumps(params, default=str),
    }
    return client.create_run(parent.info.experiment_id, run_name=trial_name, tags=tags).info.run_id


def trial_runs(uri: str, parent_id: str) -> list:
    client = _client(uri)
    parent = client.get_run(parent_id)
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    return client.search_runs([parent.info.experiment_id], filter_string=query)


def close_trials(uri: str, trials: list[dict], total_kimg: float) -> None:
    """Give each trial run the status of how its trial ended, by the sweep's own record: Tune
    ends a trial that ASHA stops (and may end one just after it reported its divergence) before
    its workers close the run, or while MLflow's exit hook closes it as FINISHED. Stopped early:
    KILLED, tagged `stopped_early` (FINISHED when its workers logged the last kimg before the stop
    reached them); diverged: FAILED, tagged `diverged` like a single diverged run; errored:
    FAILED; completed: FINISHED."""
    client = _client(uri)
    for trial in trials:
        if not trial.get("run_id"):
            continue
        run = client.get_run(trial["run_id"])
        status, kimg = trial["status"], trial["metrics"].get("kimg", 0.0)
        if status == "diverged" and run.data.tags.get("diverged") != "true":
            client.set_tag(run.info.run_id, "diverged", "true")
            client.set_tag(run.info.run_id, "diverged_reason", trial.get("reason") or "diverged")
        final = {"stopped early": "KILLED", "completed": "FINISHED"}.get(status, "FAILED")
        if status == "stopped early" and "stopped_early" not in run.data.tags:
            note = f"by ASHA at {kimg:g} of {total_kimg:g} kimg"
            if run.data.metrics.get("kimg", 0.0) >= total_kimg:  # the stop reached it too late
                note, final = note + ", after its workers had finished the run", "FINISHED"
            client.set_tag(run.info.run_id, "stopped_early", note)
        if run.info.status != final:
            client.set_terminated(run.info.run_id, final)


def tag_best(uri: str, parent_id: str, best: dict, plot: Path | None) -> None:
    """The best trial's id, run, config, metrics and checkpoint on the parent run."""
    client = _client(uri)
    for key in ("trial_id", "run_id", "checkpoint"):
        client.set_tag(parent_id, f"best_{key}", str(best.get(key, "")))
    client.set_tag(parent_id, "best_config", json.dumps(best["config"], default=str)[:5000])
    for key, value in best["metrics"].items():
        client.log_metric(parent_id, f"best_{key}", float(value))
    client.log_text(parent_id, json.dumps(best, indent=1, default=str), "best_trial.json")
    if plot is not None:
        client.log_artifact(parent_id, str(plot))
    client.set_terminated(parent_id, "FINISHED")


def tracking_of(config: RunConfig) -> tuple[str, str]:
    return config.tracking.mlflow_uri, config.tracking.experiment
