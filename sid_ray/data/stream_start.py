"""Where a resumed run's prompt stream starts, told by the workers to the stream's configuration.

Ray Train builds each rank's stream (`RankPromptStream.configure`) lazily, when the first worker
asks for its shard, which the workers do only after restoring their checkpoint. Each worker first
sends the iteration it resumes at to this actor, so `configure` can drop the rows of iterations
already trained (`id >= start x rows per rank`) before the stream's UDF reads anything for them:
a run resumed from the embedding cache reads no skipped embedding. All ranks restore from the same
checkpoint, so they send the same value; no collective is needed.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class StreamStart:
    """One int: the iteration the run's workers (re)start at."""

    def __init__(self):
        self.iteration = 0

    def set(self, iteration: int) -> None:
        self.iteration = iteration

    def get(self) -> int:
        return self.iteration


def stream_start_name(run_name: str) -> str:
    return f"sid-ray-stream-start/{run_name}"


# (cluster, job, run name) -> the handle this driver created. A non-detached actor dies once its
# creator drops the handle, asynchronously: a second launch of the same name, finding the name by
# lookup, could get an actor about to die. The driver keeps its handle for the job's life instead
# (one idle actor with no CPU per run name); another job has its own namespace, so its own actor.
_OWNED: dict[tuple[str, str, str], ray.actor.ActorHandle] = {}


def stream_start_actor(run_name: str) -> ray.actor.ActorHandle:
    """The run's actor, made on first use; later launches of the same name in this job reuse it."""
    context = ray.get_runtime_context()
    key = (context.get_node_id(), context.get_job_id(), run_name)  # a re-initialised Ray: a new node
    if key not in _OWNED:
        _OWNED[key] = StreamStart.options(name=stream_start_name(run_name), get_if_exists=True).remote()
    return _OWNED[key]


def first_rows(handle, rows_per_iteration: int) -> int:
    """Local row id the stream starts at (0 without a handle)."""
    return 0 if handle is None else ray.get(handle.get.remote()) * rows_per_iteration
