"""A folder or file of the embedding cache, local or in object storage, through pyarrow.fs.

`StoragePath("s3://bucket/emb/flux-dev")` and `StoragePath("/shared/emb")` answer the few
pathlib calls the cache makes (`/`, `is_file`, `read_text`, `write_text`, `mkdir`, `unlink`,
`glob`) on the file system `filesystem_from_uri` resolves for them: S3 and GCS with credentials,
region and endpoint from the environment, the local disk otherwise. `.fs` and `.path` go to
pyarrow.parquet's `filesystem=` arguments. Pickled as its URI: Ray Data actors and training
workers resolve it again where they run.

Emulators and S3-compatible servers: AWS_ENDPOINT_URL points s3:// at another endpoint (pyarrow
reads it itself). STORAGE_EMULATOR_HOST (`http://127.0.0.1:9023` or `127.0.0.1:9023`, the variable
Google's own clients read) points gs:// at a GCS emulator, reached anonymously: pyarrow does not
read that variable, so `filesystem_from_uri` builds the GcsFileSystem for it. Set it where Ray's
workers run too (a local cluster started from the same environment inherits it; on a cluster,
`runtime_env.env_vars`).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
GCS_SCHEMES = ("gs", "gcs")


def is_uri(location: str) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def is_gcs_uri(location: str) -> bool:
    return is_uri(location) and str(location).split("://", 1)[0] in GCS_SCHEMES


def gcs_emulator() -> pafs.GcsFileSystem | None:
    """The GcsFileSystem of the emulator STORAGE_EMULATOR_HOST names (anonymous), or None."""
    host = os.environ.get(GCS_EMULATOR_ENV, "").strip().rstrip("/")
    if not host:
        return None
    scheme, _, address = host.rpartition("://")
    return pafs.GcsFileSystem(anonymous=True, scheme=scheme or "http", endpoint_override=address)


def filesystem_from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """`pyarrow.fs.FileSystem.from_uri`, except that gs:// goes to the GCS emulator when
    STORAGE_EMULATOR_HOST is set (pyarrow would ask Google's servers for credentials)."""
    if is_gcs_uri(uri) and (emulator := gcs_emulator()) is not None:
        return emulator, str(uri).partition("://")[2].rstrip("/")
    return pafs.FileSystem.from_uri(uri)


def ray_read_args(paths: list[str]) -> dict:
    """The `paths` (and `filesystem`) arguments of a Ray Data read of `paths`: gs:// files on the
    GCS emulator go as bucket paths with its file system (Ray resolves URIs through pyarrow, which
    does not read STORAGE_EMULATOR_HOST); anything else as given."""
    on_gcs = [is_gcs_uri(p) for p in paths]
    emulator = gcs_emulator() if any(on_gcs) else None
    if emulator is None:
        return {"paths": paths}
    if not all(on_gcs):
        raise ValueError(
            f"with {GCS_EMULATOR_ENV} set, one read takes gs:// files or other files, not both: {paths}"
        )
    return {"paths": [filesystem_from_uri(p)[1] for p in paths], "filesystem": emulator}


def uri_scheme(fs: pafs.FileSystem) -> str:
    """The URI scheme of a pyarrow file system's paths ("gs" for GCS, whose type name is gcs)."""
    return "gs" if fs.type_name == "gcs" else fs.type_name


class StoragePath:
    def __init__(self, location: str | os.PathLike | StoragePath, _fs: pafs.FileSystem | None = None):
        if isinstance(location, StoragePath):
            location, _fs = location.uri, location._fs
        location = str(location)
        self._fs = _fs  # resolved on first use: naming a bucket asks nothing of the network
        if is_uri(location):
            self.uri = location.rstrip("/")
            self.path = self.uri.split("://", 1)[1]
        else:
            self.path = str(Path(location.removeprefix("file://")).expanduser().resolve())
            self.uri = self.path

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            self._fs = filesystem_from_uri(self.uri)[0] if is_uri(self.uri) else pafs.LocalFileSystem()
        return self._fs

    def __truediv__(self, name: str) -> StoragePath:
        child = f"{self.uri}/{name}" if is_uri(self.uri) else os.path.join(self.path, name)
        return StoragePath(child, self._fs)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoragePath({self.uri!r})"

    def __reduce__(self):
        return StoragePath, (self.uri,)  # file system objects stay with their process

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def with_name(self, name: str) -> StoragePath:
        return StoragePath(f"{self.uri.rsplit('/', 1)[0]}/{name}", self._fs)

    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read().decode()

    def write_text(self, text: str) -> None:
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(text.encode())

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=parents)  # object stores: nothing to make

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.delete_file(self.path)

    def glob(self, pattern: str) -> list[StoragePath]:
        """Files directly in this folder whose name matches `pattern` (no recursion)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
        return [self / n for n in names if fnmatch.fnmatch(n, pattern)]

    def replace(self, target: StoragePath) -> None:
        self.fs.move(self.path, target.path)
