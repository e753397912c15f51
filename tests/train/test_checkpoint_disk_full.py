"""A checkpoint that does not fit its disk stops the run with a message that says so, removes its
partial folder and keeps the earlier checkpoints (a real full filesystem: an 8 MiB tmpfs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sid_ray.train.checkpoint_report import CheckpointDiskFull, _write_or_explain


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # never leave a mount behind


def test_a_full_disk_is_named_and_the_partial_checkpoint_removed(small_disk):
    earlier = small_disk / "checkpoint_00000001"
    earlier.mkdir()
    torch.save(torch.zeros(1000), earlier / "state.pt")

    def write(folder: Path) -> None:
        folder.mkdir()
        torch.save(torch.zeros(4 << 20), folder / "fake.pt")  # 16 MiB on an 8 MiB disk

    partial = small_disk / ".checkpoint_00000002.partial"
    with pytest.raises(CheckpointDiskFull, match="filled up while writing it") as raised:
        _write_or_explain(write, partial, "checkpoint_00000002")
    assert "train.storage_path" in str(raised.value) and "resume" in str(raised.value)
    assert not partial.exists()
    # the space is back now: no file of the failed write is still held open
    free = shutil.disk_usage(small_disk).free
    assert free > 7 << 20, f"{free / 2**20:.1f} MiB free after removing the partial checkpoint"
    assert torch.load(earlier / "state.pt").shape == (1000,)


def test_other_write_errors_pass_through(tmp_path):
    def write(folder: Path) -> None:
        raise RuntimeError("not a disk problem")

    with pytest.raises(RuntimeError, match="not a disk problem"):
        _write_or_explain(write, tmp_path / "partial", "checkpoint_00000002")
