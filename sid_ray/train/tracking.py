"""MLflow logging from rank 0 (only when `tracking.mlflow_uri` is set).

The run id is kept in the checkpoint's train state, so a resumed run (after a worker failure
or when the same run name is started again) keeps logging into the same MLflow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sid_ray.config.io import config_to_dict
from sid_ray.config.schema import RunConfig


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///relative/path.db -> sqlite:////abs/path.db, resolved where the run is started.

    Ray Train workers run in their own working directories, so a relative sqlite path would give
    every process its own database.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


class MlflowTracker:
    """Opens (or re-opens) the run's MLflow run and logs params and metrics."""

    def __init__(self, config: RunConfig, run_id: str = ""):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(config.tracking.mlflow_uri)
        experiment = mlflow.set_experiment(config.tracking.experiment)
        if run_id:
            self.run = mlflow.start_run(run_id=run_id)
        else:
            self.run = mlflow.start_run(experiment_id=experiment.experiment_id, run_name=config.name)
            params = {k: str(v)[:500] for k, v in flatten(config_to_dict(config)).items()}
            mlflow.log_params(params)
        self.run_id = self.run.info.run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        numbers = {k.replace("/", "_"): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.mlflow.log_metrics(numbers, step=step)

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def make_tracker(config: RunConfig, rank: int, run_id: str = "") -> MlflowTracker | None:
    if rank != 0 or not config.tracking.mlflow_uri:
        return None
    return MlflowTracker(config, run_id)
