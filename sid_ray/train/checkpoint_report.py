"""Write a checkpoint once and have Ray Train register it (`write_and_report`).

Ray's own pattern writes a checkpoint into a temporary folder and copies it into the run's
storage. On a local or mounted storage path that writes every byte twice and needs twice the
checkpoint's size free on the disk at once: full mode on a 2 B-parameter teacher (F and G with
bf16 weights, fp32 master copies and Adam moments, ~57 GB a checkpoint by parameter count)
filled the 64 GiB disk of an H200 machine in Ray's copy (SD3-Medium,
benchmarks/results/flux-dev_h200_2026-12-02.md). So there the ranks write straight into the
run's folder, under a hidden `.NAME.partial` name that rank 0 renames once every rank has
written (a run killed mid-write leaves no folder that looks like a checkpoint), and report it
without an upload. On any other filesystem (s3://, gs://) Ray's upload is the way there.
"""

from __future__ import annotations

import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs
import ray.train
import torch.distributed as dist
from ray.train import CheckpointUploadMode

#: less free space than this after a failed write means the disk filled up
FULL_DISK_BYTES = 1 << 30


class CheckpointDiskFull(OSError):
    """A checkpoint did not fit on its disk (the partial folder is removed, earlier ones kept)."""


def _release_frames(error: BaseException) -> None:
    """Drop the locals of the frames `error` and the errors it chains were raised through.

    A failed torch.save's open file lives on in them (its writer is a local of a frame in the
    chained iostream error's traceback) until a garbage collection; while it is open, removing
    the partial checkpoint gives none of its space back."""
    while error is not None:
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _write_or_explain(write: Callable[[Path], None], folder: Path, name: str) -> None:
    """`write(folder)`; when it fails on a full disk (torch.save reports that as an iostream or
    "unexpected pos" error, not ENOSPC), remove the partial folder and say so in words."""
    try:
        write(folder)
    except (OSError, RuntimeError) as error:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
        if free >= FULL_DISK_BYTES:
            raise  # not a full disk: the error as it came, its frames' locals intact
        _release_frames(error)
        shutil.rmtree(folder, ignore_errors=True)
        raise CheckpointDiskFull(
            f"checkpoint {name}: the disk holding {folder.parent} filled up while writing it "
            f"({free / 2**30:.1f} GiB were left; {type(error).__name__}: {str(error)[:200]}). The "
            "partial checkpoint was removed and the earlier ones are kept. Free space, lower "
            "train.keep_checkpoints, or set train.storage_path to a larger disk, then start the "
            "same run again to resume from its last checkpoint."
        ) from error


def write_and_report(name: str, rank: int, row: dict, write: Callable[[Path], None]) -> None:
    """`write(folder)` on every rank into checkpoint `name`, then `ray.train.report(row)` with it
    (collective: every rank calls it)."""
    storage = ray.train.get_context().get_storage()
    if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        with tempfile.TemporaryDirectory(prefix="sid-ckpt-") as tmp:
            _write_or_explain(write, Path(tmp), name)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(row, checkpoint=checkpoint, checkpoint_dir_name=name)
        return
    final = Path(storage.build_checkpoint_path_from_name(name))
    partial = final.with_name(f".{name}.partial")
    if rank == 0:  # what an attempt killed while writing this checkpoint left
        shutil.rmtree(partial, ignore_errors=True)
    dist.barrier()
    _write_or_explain(write, partial, name)
    dist.barrier()
    if rank == 0:
        # a folder of this name was never reported (else the run would have resumed past it):
        # it is an attempt's that died between this rename and its report
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    dist.barrier()
    checkpoint = ray.train.Checkpoint.from_directory(str(final))
    ray.train.report(row, checkpoint=checkpoint, checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD)
