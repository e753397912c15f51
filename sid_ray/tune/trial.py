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
from pathlib import Path

from sid_ray.config.io import dump_config
from sid_ray.tune.mlflow_runs import trial_run
from sid_ray.tune.spec import SweepSpec, trial_overrides


def run_trial(params: dict, spec: SweepSpec, uri: str, parent_id: str, sweep_dir: str, cwd: str) -> None:
    """Build and fit the trial's Train run; its rows reach Tune through TuneReportCallback."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

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
    trainer.run_config.callbacks = [*(trainer.run_config.callbacks or []), TuneReportCallback()]
    trainer.fit()
