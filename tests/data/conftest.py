"""A local Ray for the data tests (token auth off: nothing outside can reach it)."""

import os

import pytest


@pytest.fixture(scope="module")
def ray_local():
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    # 2 CPUs: a VAE-encoding actor holds one while the webdataset read tasks use the other
    # address="local": always a new cluster, never one a `ray start` elsewhere on the machine left
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
