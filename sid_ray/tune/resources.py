"""How many trials the cluster holds at once, decided before any starts, and what a sweep needs
of the cluster so that a stopped trial gives its CPUs back.

Tune does not see a trial's Train workers: the trial's own process only waits on its Train run
(`trial.py`), and the workers reserve `train.*` in a placement group of their own. Each trial
also needs `data.stream_cpus` left free beside its workers for its Ray Data stream
(`sid_ray.train.data_resources`). So the sweep sets Tune's `max_concurrent_trials` to the number
of trials whose workers and data streams fit side by side, and refuses a sweep of which not even
one trial fits, instead of starting trials whose data stream waits forever.

When ASHA stops a trial, Tune ends the trial's process, and with it the Train controller, before
the controller can remove its workers' placement group; Ray Train's `PlacementGroupCleaner`
removes it, and it finds the controller dead through Ray's state API, which the dashboard
serves. On a cluster without it the stopped trial's CPUs stay reserved and the next trial's data
stream waits forever ("Cluster resources are not enough ... ReadRange"); `check_state_api`
refuses such a cluster at start.
"""

from __future__ import annotations

import math

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.train.data_resources import reserve_data_stage


def concurrent_trials(config: RunConfig, cpus: float, gpus: float, most: int = 0) -> tuple[int, str]:
    """(trials at once, the line that says why) for trials of `config` on a cluster of `cpus`
    CPUs and `gpus` GPUs; `most` > 0 caps it. ConfigError when not even one trial fits.
    `data.stream_cpus=0` (an autoscaling cluster, which grows to the trials) checks nothing."""
    train, stream = config.train, config.data.stream_cpus
    need_cpus = train.num_workers * train.cpus_per_worker + stream
    need_gpus = train.num_workers * train.gpus_per_worker if train.use_gpu else 0.0
    if stream == 0:
        fit = most or 1
    else:
        reserve_data_stage(config, cpus)  # one trial's workers and data stream: the launcher's refusal
        if need_gpus > gpus:
            raise ConfigError(
                f"train.num_workers: a trial's {train.num_workers} worker(s) x "
                f"{train.gpus_per_worker:g} GPU need {need_gpus:g} GPUs, the cluster has {gpus:g}"
            )
        fit = math.floor(cpus / need_cpus + 1e-9)
        if need_gpus > 0:
            fit = min(fit, math.floor(gpus / need_gpus + 1e-9))
    chosen = min(fit, most) if most > 0 else fit
    gpu_part = f" + {need_gpus:g} GPU" if need_gpus else ""
    line = (
        f"each trial: {train.num_workers} worker(s) x {train.cpus_per_worker:g} CPU + {stream:g} for "
        f"its data stream = {need_cpus:g} CPU{gpu_part}; the cluster ({cpus:g} CPU, {gpus:g} GPU) "
        f"holds {fit} at once; running {chosen} at a time"
    )
    return int(chosen), line


def _state_api_answers() -> str:
    """'' when Ray's state API answers a worker the way it answers Train's cleaner, else why not."""
    from ray.util.state import list_actors

    try:
        list_actors(limit=1, timeout=20, raise_on_missing_output=False)
    except Exception as err:  # RayStateApiException, ConnectionError (several clusters), ...
        return f"{type(err).__name__}: {err}"
    return ""


def check_state_api() -> None:
    """ConfigError when a Ray worker cannot reach the state API: asked from a task, as Ray
    Train's PlacementGroupCleaner asks it (on a machine running several Ray clusters a worker
    only finds its own through RAY_API_SERVER_ADDRESS, which jobs/sweep.py sets)."""
    import ray

    error = ray.get(ray.remote(num_cpus=0)(_state_api_answers).remote())
    if error:
        raise ConfigError(
            "Ray's state API does not answer the cluster's workers: Ray Train frees the workers of "
            "a trial that ASHA stops through it, and without it the next trial would wait forever "
            "for their CPUs. Run the cluster with its dashboard (not --include-dashboard=false); "
            "where several Ray clusters share a machine, set RAY_API_SERVER_ADDRESS to this one's "
            f"dashboard in the job's runtime env ({error})"
        )
