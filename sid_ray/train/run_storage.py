"""Where Ray Train keeps a run's checkpoints, and getting the final export out of them.

`train.storage_path` empty keeps them in the run folder `<output_dir>/<name>` (a local or shared
folder, as before); `s3://bucket/prefix` or `gs://bucket/prefix` puts them in object storage as
`<storage_path>/<name>`, which Ray Train reaches through pyarrow (credentials, region and
endpoint from the environment: AWS_ENDPOINT_URL points it at an S3-compatible server,
STORAGE_EMULATOR_HOST gs:// at a GCS emulator, `sid_ray.data.storage`). Ray Train
keeps its checkpoint index there too, so starting the same run name again, on a restarted or a
new cluster, resumes from the last checkpoint in the bucket. The run folder keeps what the driver
and rank 0 write locally (config.yaml, the exported pipeline, evaluation).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import ray.train

from sid_ray.config.paths import EXPORT_DIR, STATE_FILE
from sid_ray.config.schema import RunConfig
from sid_ray.data.storage import filesystem_from_uri, gcs_emulator, is_gcs_uri, uri_scheme


def storage_path(config: RunConfig) -> str:
    """Ray Train's `storage_path`: the URI as given, or the absolute output folder."""
    given = config.train.storage_path
    if given and "://" in given:
        return given
    return str(Path(given or config.output_dir).expanduser().resolve())


def checkpoint_storage(config: RunConfig) -> tuple[pafs.FileSystem, str]:
    """(file system, folder) where Ray Train writes the run's `checkpoint_*` folders:
    `<storage_path>/<name>`, the run folder when `train.storage_path` is empty."""
    root = f"{storage_path(config).rstrip('/')}/{config.name}"
    if "://" in root:
        return filesystem_from_uri(root)
    return pafs.LocalFileSystem(), root


def ray_storage(config: RunConfig) -> dict:
    """`ray.train.RunConfig`'s storage_path and storage_filesystem: the file system given only
    where pyarrow's own resolution would not reach it (gs:// on the GCS emulator), with the path
    on it."""
    path = storage_path(config)
    if is_gcs_uri(path) and gcs_emulator() is not None:
        fs, fs_path = filesystem_from_uri(path)
        return {"storage_path": fs_path, "storage_filesystem": fs}
    return {"storage_path": path}


def checkpoint_location(checkpoint: ray.train.Checkpoint | None) -> str | None:
    """The checkpoint's path, as a URI when it is not on the local file system."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint.filesystem, pafs.LocalFileSystem):
        return checkpoint.path
    return f"{uri_scheme(checkpoint.filesystem)}://{checkpoint.path}"


def train_state(checkpoint: ray.train.Checkpoint | None) -> dict:
    """The checkpoint's counters (`sid_ray.train.checkpoint.TrainState`), read where it is stored."""
    if checkpoint is None:
        return {}
    path = f"{checkpoint.path}/{STATE_FILE}"
    if checkpoint.filesystem.get_file_info(path).type != pafs.FileType.File:
        return {}
    with checkpoint.filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())


def copy_export(checkpoint: ray.train.Checkpoint | None, run_dir: Path) -> Path | None:
    """The final checkpoint's export files (the generator's weights) into `run_dir/export`, beside
    the pipeline folder rank 0 wrote there; None when the checkpoint has no export."""
    if checkpoint is None:
        return None
    fs, folder = checkpoint.filesystem, f"{checkpoint.path}/{EXPORT_DIR}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return None
    export_dir = run_dir / EXPORT_DIR
    export_dir.mkdir(parents=True, exist_ok=True)
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if info.type != pafs.FileType.File:
            continue
        target = export_dir / info.base_name
        target.unlink(missing_ok=True)
        if isinstance(fs, pafs.LocalFileSystem):
            _link_or_copy(info.path, str(target))
        else:  # object storage: download
            pafs.copy_files(info.path, str(target), fs, pafs.LocalFileSystem())
    return export_dir


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link where the storage allows (no second copy of a large file), else a copy."""
    try:
        os.link(source, destination)
    except OSError:  # another file system (network storage), or links not supported
        shutil.copy2(source, destination)
