"""Checkpoints on GCS (`train.storage_path=gs://...`), resumed after the Ray head restarts.

A GCS emulator runs on loopback (tests/data/gcs_server.py; STORAGE_EMULATOR_HOST points pyarrow at
it, `sid_ray.data.storage`). As tests/train/test_storage_s3.py: the digits teacher trains 4 of 8
iterations with its checkpoints in the bucket, the local Ray cluster is shut down and a new one
started, and the same run name resumes from the bucket's last checkpoint, ending where an
uninterrupted run with local checkpoints ends.
"""

from __future__ import annotations

import pytest

from tests.data.gcs_server import gcs_keys, gcs_server
from tests.train.test_storage_s3 import resume_after_head_restart


@pytest.mark.ray
@pytest.mark.slow
def test_checkpoints_on_gcs_resume_after_the_head_restarts(tmp_path):
    resume_after_head_restart(tmp_path, "gs", gcs_server, gcs_keys)
