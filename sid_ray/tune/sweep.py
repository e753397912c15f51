"""Run (or resume) a sweep: Ray Tune over the spec's space, ASHA on the in-training FID, MLflow
parent and nested runs, and at the end the best trial printed, tagged, and the trials plotted.

The Tune experiment lives in `<output_dir>/<name>/tune`; when it exists the sweep is restored
(`Tuner.restore`: finished trials kept, unfinished and errored ones resumed), so a sweep whose
driver was stopped is finished by running the same command again.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sid_ray.train.tracking import check_tracking_uri, resolve_tracking_uri
from sid_ray.tune import mlflow_runs
from sid_ray.tune.plot import plot_trials
from sid_ray.tune.spec import SweepSpec, param_space
from sid_ray.tune.trial import run_trial

DEFAULT_TRACKING = "sqlite:///runs/mlflow.db"


@dataclass
class SweepResult:
    trials: list[dict]
    best: dict
    plot: Path
    parent_run_id: str
    tracking_uri: str
    table: str


def _scheduler(spec: SweepSpec, total_kimg: float):
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    return ASHAScheduler(
        time_attr="kimg",
        max_t=total_kimg,
        grace_period=float(s.get("grace_kimg", total_kimg / 4)),
        reduction_factor=float(s.get("reduction_factor", 2)),
    )


def _tuner(spec: SweepSpec, trainable, sweep_dir: Path, total_kimg: float):
    from ray import tune

    experiment = sweep_dir / "tune"
    if tune.Tuner.can_restore(str(experiment)):
        print(f"resuming sweep {spec.name} from {experiment}", flush=True)
        return tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            scheduler=_scheduler(spec, total_kimg),
            num_samples=spec.num_samples,
            max_concurrent_trials=spec.max_concurrent_trials,
            # a fresh process per trial: Ray Data's context (the launcher sets it) is process-global
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir)),
    )


def run_sweep(spec: SweepSpec, spec_text: str) -> SweepResult:
    """Run or resume the sweep on the connected (or a local) Ray cluster."""
    from ray import tune

    # rows between evaluations carry no eval_fid; ASHA acts on the rows that do
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    base = spec.base_config()
    uri = resolve_tracking_uri(base.tracking.mlflow_uri or DEFAULT_TRACKING)
    check_tracking_uri(uri)  # before any trial starts
    sweep_dir = Path(spec.output_dir).resolve() / spec.name
    parent_id = mlflow_runs.parent_run(uri, base.tracking.experiment, sweep_dir, spec.name, spec_text)
    trainable = tune.with_parameters(
        run_trial, spec=spec, uri=uri, parent_id=parent_id, sweep_dir=str(sweep_dir), cwd=os.getcwd()
    )
    # the trial only waits on its Train run, whose workers reserve `train.*`; Tune needs a
    # non-empty bundle, and a byte of memory keeps a 2-core laptop's CPUs for workers and data
    trainable = tune.with_resources(trainable, {"CPU": spec.trial_driver_cpus, "memory": 1})
    grid = _tuner(spec, trainable, sweep_dir, base.train.total_kimg).fit()
    mlflow_runs.close_stopped_trials(uri, parent_id, base.train.total_kimg)
    trials = [_trial(r, spec, base.train.total_kimg) for r in grid]
    run_ids = {
        r.data.tags.get(mlflow_runs.TRIAL_TAG): r.info.run_id for r in mlflow_runs.trial_runs(uri, parent_id)
    }
    for trial in trials:
        trial["run_id"] = run_ids.get(trial["trial_id"], "")
    best = _best(trials, spec)
    keys = [k for k, r in spec.space.items() if not (isinstance(r, dict) and "same_as" in r)]
    logs = {k for k, r in spec.space.items() if isinstance(r, dict) and "loguniform" in r}
    plot = plot_trials(trials, keys, spec.metric, sweep_dir / "trials.png", logs)
    mlflow_runs.tag_best(uri, parent_id, best, plot)
    return SweepResult(trials, best, plot, parent_id, uri, format_trials(trials, spec.metric, best))


def _trial(result, spec: SweepSpec, total_kimg: float) -> dict:
    metrics = dict(result.metrics or {})
    if metrics.get("diverged"):
        status = "diverged"
    elif result.error is not None:
        status = "error"
    else:
        status = "completed" if metrics.get("kimg", 0) >= total_kimg - 1e-9 else "stopped early"
    keep = ("kimg", spec.metric, "eval_share_of_wall") + tuple(k for k in metrics if k.startswith("eval_"))
    return {
        "trial_id": metrics.get("trial_id", Path(result.path).name),
        "config": dict(result.config),
        "metrics": {k: metrics[k] for k in keep if isinstance(metrics.get(k), int | float)},
        "status": status,
        "checkpoint": metrics.get("checkpoint_path", ""),
    }


def _best(trials: list[dict], spec: SweepSpec) -> dict:
    sign = 1 if spec.mode == "min" else -1
    scored = [
        t
        for t in trials
        if math.isfinite(t["metrics"].get(spec.metric, math.nan)) and t["status"] != "diverged"
    ]
    if not scored:
        raise RuntimeError(f"no trial of sweep {spec.name} reported a finite {spec.metric}")
    return min(scored, key=lambda t: sign * t["metrics"][spec.metric])


def format_trials(trials: list[dict], metric: str, best: dict) -> str:
    lines = [f"{'trial':<14} {'status':<14} {'kimg':>7} {metric:>10} {'eval share':>10}  config"]
    for t in trials:
        m = t["metrics"]
        mark = "*" if t is best else " "
        lines.append(
            f"{t['trial_id']:<13}{mark} {t['status']:<14} {m.get('kimg', math.nan):>7.3f} "
            f"{m.get(metric, math.nan):>10.3f} {100 * m.get('eval_share_of_wall', math.nan):>9.1f}%  {t['config']}"
        )
    return "\n".join(lines)
