"""The tests' throwaway local Ray cluster, started one way (fixtures and `with` blocks alike).

A `with` block, not only a fixture: tests that start an MLflow or S3 server start Ray inside it,
so that Ray's workers inherit the server's address and keys from the environment.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def local_ray(num_cpus: int = 2, object_store_memory: int | None = None, log_to_driver: bool = False):
    """A new local Ray cluster, shut down on exit (token auth off: nothing outside can reach it)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    # address="local": always a new cluster, never one a `ray start` elsewhere on the machine left
    ray.init(
        address="local",
        num_cpus=num_cpus,
        object_store_memory=object_store_memory,
        include_dashboard=False,
        log_to_driver=log_to_driver,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
