"""The data stage's share of the cluster: checked before a run starts, not discovered as a hang.

Ray Train reserves `train.cpus_per_worker` for each worker for the whole run; the Ray Data stream
that feeds them (the per-rank prompt, pair or embedding rows) runs its tasks beside them and
needs CPUs of its own. On a cluster whose CPUs the workers take entirely (a 2-CPU head and 2
workers) those tasks never start and Ray Data only warns that it "may hang forever". The launcher
asks for `data.stream_cpus` more than the workers take and refuses a run that cannot have them.
"""

from __future__ import annotations

from sid_ray.config.schema import ConfigError, RunConfig


def reserve_data_stage(config: RunConfig, cluster_cpus: float) -> str:
    """The reservation line; ConfigError when the workers would leave the stream no CPU."""
    train, stream = config.train, config.data.stream_cpus
    workers = train.num_workers * train.cpus_per_worker
    line = (
        f"CPUs: {train.num_workers} worker(s) x {train.cpus_per_worker:g} + {stream:g} for the data "
        f"stream, of {cluster_cpus:g} in the cluster"
    )
    if stream > 0 and workers + stream > cluster_cpus:
        fit = max(cluster_cpus - stream, 0) / train.num_workers
        raise ConfigError(
            f"train.cpus_per_worker: {line}: the Ray Data stream feeding the workers would wait "
            f"forever. Set train.cpus_per_worker={fit:g} or less, use fewer workers or a larger "
            "cluster (data.stream_cpus=0 skips this check on an autoscaling cluster)"
        )
    return line


def check_data_stage(config: RunConfig) -> str:
    """`reserve_data_stage` against the connected cluster's CPUs."""
    import ray

    return reserve_data_stage(config, float(ray.cluster_resources().get("CPU", 0)))
