"""Test-wide settings."""

import os

import pytest
import torch

# The test models are tiny: one intra-op thread is faster than two fighting over 2 cores, and
# keeps parallel test processes (Ray workers, subprocesses) from oversubscribing the CPU.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
