"""Run (or resume) a sweep: Ray Tune over the spec's space, ASHA on the in-training FID, MLflow
parent and nested runs, and at the end the best trial printed, tagged, and the trials plotted.

The Tune experiment lives in `<output_dir>/<name>/tune`; when it exists the sweep is restored
(`Tuner.restore`: finished trials kept, unfinished and errored ones resumed), so a sweep whose
driver was stopped is finished by running the same command again. As many trials run at once as
the cluster holds with their data streams (`resources.concurrent_trials`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ray import tune

from sid_ray.config.schema import RunConfig
from sid_ray.train.tracking import check_tracking_uri, resolve_tracking_uri
from sid_ray.tune import mlflow_runs
from sid_ray.tune.plot import plot_trials
from sid_ray.tune.resources import check_state_api, concurrent_trials
from sid_ray.tune.spec import SweepSpec, param_space
from sid_ray.tune.trial import run_trial

DEFAULT_TRACKING = "sqlite:///runs/mlflow.db"


@dataclass
class SweepResult:
    trials: list[dict]
    best: dict | None
    plot: Path | None
    parent_run_id: str
    tracking_uri: str
    table: str
    unfinished: list[str] = field(default_factory=list)  # trial ids left to run (interrupted)
    total_trials: int = 0  # the spec's trials, started or not


def _scheduler(spec: SweepSpec, total_kimg: float):
    """ASHA on `spec.metric` over kimg. Its rungs lie below the run's end (a trial that trained
    to the end finishes by itself: stopping it then would save nothing and cut its export and its
    MLflow run short), and reaching `max_t` stops nothing."""
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    below_end = total_kimg * (1 - 1e-6)
    return ASHAScheduler(
        time_attr="kimg",
        max_t=below_end,
        grace_period=min(float(s.get("grace_kimg", total_kimg / 4)), below_end),
        reduction_factor=float(s.get("reduction_factor", 2)),
        stop_last_trials=False,
    )


def _tuner(spec: SweepSpec, trainable, sweep_dir: Path, total_kimg: float, at_once: int, callbacks, verbose):
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
            max_concurrent_trials=at_once,
            # a fresh process per trial: Ray Data's context (the launcher sets it) is process-global
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(sweep_dir), callbacks=callbacks, verbose=2 if verbose else 0
        ),
    )


def run_sweep(spec: SweepSpec, spec_text: str, verbose: bool = True) -> SweepResult:
    """Run or resume the sweep on the connected Ray cluster. `verbose`: Tune's own status
    tables; otherwise one line per trial start, evaluation and end (`TrialLines`)."""
    import ray

    # rows between evaluations carry no eval_fid; ASHA acts on the rows that do
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    base = spec.base_config()
    uri = resolve_tracking_uri(base.tracking.mlflow_uri or DEFAULT_TRACKING)
    check_tracking_uri(uri)  # before any trial starts
    cluster = ray.cluster_resources()
    at_once, line = concurrent_trials(
        base, cluster.get("CPU", 0.0), cluster.get("GPU", 0.0), spec.max_concurrent_trials
    )
    check_state_api()
    print(line, flush=True)
    sweep_dir = Path(spec.output_dir).resolve() / spec.name
    parent_id = mlflow_runs.parent_run(uri, base.tracking.experiment, sweep_dir, spec.name, spec_text)
    trainable = tune.with_parameters(
        run_trial, spec=spec, uri=uri, parent_id=parent_id, sweep_dir=str(sweep_dir), cwd=os.getcwd()
    )
    # the trial's process only waits on its Train run, whose workers reserve `train.*` in their own
    # placement group; Tune needs a non-empty bundle, and a byte of memory takes no CPU from them
    trainable = tune.with_resources(trainable, {"CPU": spec.trial_driver_cpus, "memory": 1})
    total = base.train.total_kimg
    ended = EndedTrials(sweep_dir / ENDED_FILE)
    callbacks = [ended] if verbose else [ended, TrialLines(spec.metric, total)]
    grid = _tuner(spec, trainable, sweep_dir, total, at_once, callbacks, verbose).fit()
    # how each trial ended is our own record: Tune reports a trial that was running when the
    # driver was interrupted as TERMINATED too
    ended_how = ended.read()
    trials = [_trial(r, spec, base, ended_how) for r in grid]
    unfinished = [t["trial_id"] for t in trials if t["status"] == "unfinished"]
    unfinished += ["(not started)"] * max(expected_trials(spec) - len(trials), 0)
    run_ids = {
        r.data.tags.get(mlflow_runs.TRIAL_TAG): r.info.run_id for r in mlflow_runs.trial_runs(uri, parent_id)
    }
    for trial in trials:
        trial["run_id"] = run_ids.get(trial["trial_id"], "")
    if unfinished:  # the driver was interrupted: the MLflow runs stay open for the resume
        table = format_trials(trials, spec.metric, None)
        total_trials = max(expected_trials(spec), len(trials))
        return SweepResult(trials, None, None, parent_id, uri, table, unfinished, total_trials)
    mlflow_runs.close_trials(uri, trials, total)
    best = _best(trials, spec)
    keys = [k for k, r in spec.space.items() if not (isinstance(r, dict) and "same_as" in r)]
    logs = {k for k, r in spec.space.items() if isinstance(r, dict) and "loguniform" in r}
    title = f"sweep {spec.name}: {len(trials)} trials, ASHA on {spec.metric} ({spec.mode})"
    plot = plot_trials(trials, keys, spec.metric, sweep_dir / "trials.png", logs, title)
    mlflow_runs.tag_best(uri, parent_id, best, plot)
    return SweepResult(trials, best, plot, parent_id, uri, format_trials(trials, spec.metric, best))


def ended_status(metrics: dict, total_kimg: float) -> str:
    """How a trial that ended without an error ended, from its last row: diverged, completed,
    or stopped early (before the last kimg: ASHA stopped it)."""
    if metrics.get("diverged"):
        return "diverged"
    return "completed" if metrics.get("kimg", 0) >= total_kimg - 1e-9 else "stopped early"


def expected_trials(spec: SweepSpec) -> int:
    """The trials the spec makes: num_samples x the product of its grids' sizes."""
    count = spec.num_samples
    for rule in spec.space.values():
        if isinstance(rule, dict) and "grid" in rule:
            count *= len(rule["grid"])
    return count


def _trial(result, spec: SweepSpec, base: RunConfig, ended: dict[str, tuple[str, str]]) -> dict:
    """One trial as the summary, the plot and MLflow see it: its config, last metrics, status
    (completed, stopped early, diverged, error, or unfinished when the driver was interrupted)."""
    from sid_ray.train.in_training_eval import divergence

    metrics = dict(result.metrics or {})
    # a trial that reported has its id in its metrics; one that never did, only in its folder
    trial_id, how = ended.get(metrics.get("trial_id"), None) or ended.get(result.path, (None, None))
    trial_id = trial_id or metrics.get("trial_id") or Path(result.path).name
    reason = ""
    if how is None:
        status = "unfinished"
    elif result.error is not None or how == "error":
        status = "error"
    else:
        status = ended_status(metrics, base.train.total_kimg)
        reason = (divergence(metrics, base) or "diverged") if status == "diverged" else ""
    keep = ("kimg", spec.metric, "eval_share_of_wall") + tuple(k for k in metrics if k.startswith("eval_"))
    return {
        "trial_id": trial_id,
        "config": dict(result.config),
        "metrics": {k: metrics[k] for k in keep if isinstance(metrics.get(k), int | float)},
        "status": status,
        "reason": reason,
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


def format_trials(trials: list[dict], metric: str, best: dict | None) -> str:
    lines = [f"{'trial':<14} {'status':<14} {'kimg':>7} {metric:>10} {'eval share':>10}  config"]
    for t in trials:
        m = t["metrics"]
        mark = "*" if t is best else " "
        lines.append(
            f"{t['trial_id']:<13}{mark} {t['status']:<14} {m.get('kimg', math.nan):>7.3f} "
            f"{m.get(metric, math.nan):>10.3f} {100 * m.get('eval_share_of_wall', math.nan):>9.1f}%  {t['config']}"
        )
    return "\n".join(lines)


ENDED_FILE = "ended_trials.txt"


class EndedTrials(tune.Callback):
    """The trials that ended (completed, stopped by ASHA, diverged or failed) in the sweep folder,
    a line each (id, "complete" or "error", the trial's folder), across the driver's sessions:
    Tune reports a trial that was running when its driver was interrupted as TERMINATED too, and
    restores it as unfinished."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, tuple[str, str]]:
        """trial id -> (trial id, how it ended), and the trial's folder -> the same."""
        ended = {}
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        for line in lines:
            trial_id, how, path = (line.split(" ", 2) + ["", ""])[:3]
            ended[trial_id] = ended[path] = (trial_id, how)
        return ended

    def _add(self, trial, how: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(f"{trial.trial_id} {how} {trial.path}\n")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._add(trial, "complete")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._add(trial, "error")


class TrialLines(tune.Callback):
    """The sweep's progress without Tune's tables: a line per trial start, evaluation and end."""

    def __init__(self, metric: str, total_kimg: float):
        self.metric, self.total = metric, total_kimg

    @staticmethod
    def _say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(f"trial {trial.trial_id} started: {trial.config}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.metric in result:
            self._say(
                f"trial {trial.trial_id}: kimg {result.get('kimg', math.nan):.3f}/{self.total:g}  "
                f"{self.metric} {result[self.metric]:.3f}"
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        outcome = ended_status(last, self.total)
        by = " by ASHA" if outcome == "stopped early" else ""
        self._say(f"trial {trial.trial_id} {outcome}{by} at kimg {last.get('kimg', 0.0):.3f}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say(f"trial {trial.trial_id} failed: see {trial.local_path or trial.path}/error.txt")
