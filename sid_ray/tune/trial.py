"""One trial of a sweep: the Ray Train V2 pattern, a Tune function that builds the TorchTrainer.

The function only waits on its Train run (the workers hold the resources of `train.*`); the Train
run reports each row to Tune through `TuneReportCallback`, so ASHA sees the in-training FID as
the workers compute it. The run's name is the trial id: a sweep restored after its driver died
starts the trial's Train run again under the same name, which resumes from its last checkpoint,
and the trial's MLflow run is found again by that id.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from ray.tune.integration.ray_train import TuneReportCallback

from sid_ray.config.io import dump_config
from sid_ray.train.tracking import GRID_DIR, grid_name
from sid_ray.tune.mlflow_runs import trial_run
from sid_ray.tune.spec import SweepSpec, trial_overrides

GRID_WAIT_S = 30.0


class ReportAfterGrid(TuneReportCallback):
    """TuneReportCallback that passes an evaluation's row on to Tune once rank 0 has logged the
    evaluation's sample grid to MLflow.

    Rank 0 logs the grid just after `ray.train.report` returns (sid_ray/train/worker.py), and
    Tune ends a trial that ASHA stops as soon as it sees the row: without the wait, a stopped
    trial's MLflow run would lack the grid of the evaluation that stopped it. A row that
    diverged has no grid to wait for; past `GRID_WAIT_S` the row goes on without it.
    """

    def __init__(self, uri: str, run_id: str, grid_samples: int):
        super().__init__()
        self.uri, self.run_id, self.grid_samples = uri, run_id, grid_samples

    def after_report(self, run_context, metrics, checkpoint):
        row = metrics[0] if metrics else {}
        if "eval_fid" in row and not row.get("diverged") and self.grid_samples > 0:
            self._wait_for_grid(float(row["kimg"]))
        super().after_report(run_context, metrics, checkpoint)

    def _wait_for_grid(self, kimg: float) -> None:
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        name = grid_name(kimg)
        deadline = time.monotonic() + GRID_WAIT_S
        while time.monotonic() < deadline:
            try:
                if any(a.path.endswith(name) for a in client.list_artifacts(self.run_id, GRID_DIR)):
                    return
            except Exception:  # the store briefly unreachable: ask again
                pass
            time.sleep(0.5)


def run_trial(params: dict, spec: SweepSpec, uri: str, parent_id: str, sweep_dir: str, cwd: str) -> None:
    """Build and fit the trial's Train run; its rows reach Tune through TuneReportCallback."""
    import ray.tune

    from sid_ray.train.launcher import build_trainer

    os.chdir(cwd)  # the sweep's relative paths (base config, prompts, sqlite store) are the driver's
    context = ray.tune.get_context()
    trial_id = context.get_trial_id()
    run_id = trial_run(uri, parent_id, trial_id, context.get_trial_name(), params)
    config = spec.base_config(
        [
            *trial_overrides(spec, params),
            f"name={spec.name}-{trial_id}",
            f"output_dir={Path(sweep_dir) / 'trials'}",
            f"tracking.mlflow_uri={uri}",
            f"tracking.run_id={run_id}",
        ]
    )
    config = dataclasses.replace(config, output_dir=str(Path(config.output_dir).resolve()))
    dump_config(config, Path(config.output_dir) / config.name / "config.yaml")
    trainer = build_trainer(config)
    # the controller reads its RunConfig's callbacks when fit() starts: every Train report (the
    # workers' rows, evaluations and checkpoint paths) reaches Tune and its scheduler
    report = ReportAfterGrid(uri, run_id, config.eval.grid_samples)
    trainer.run_config.callbacks = [*(trainer.run_config.callbacks or []), report]
    trainer.fit()
