"""A local Ray for the data tests (token auth off: nothing outside can reach it)."""

import pytest

from tests.local_ray import local_ray


@pytest.fixture(scope="module")
def ray_local():
    # 2 CPUs: a VAE-encoding actor holds one while the webdataset read tasks use the other
    with local_ray(num_cpus=2):
        yield
