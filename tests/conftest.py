"""Test-wide settings."""

import os
import sys

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


# Leave the test process without the interpreter's teardown. The suite starts and shuts down
# several in-process Ray clusters (one per module); Ray's C++ threads can outlive a shutdown and
# crash while the interpreter frees the modules they point into (ray-project/ray#31145). CI saw
# it once: "452 passed" followed by "Segmentation fault" and exit 139. Every fixture has cleaned
# up by now (Ray shut down, servers stopped), so the exit status is the session's, unchanged.
_session_status = None


def pytest_sessionfinish(session, exitstatus):
    global _session_status
    _session_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _session_status is None:  # not a full session (--collect-only with errors, --help)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_session_status)
