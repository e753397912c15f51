"""A GCS emulator on loopback (gcp-storage-emulator, in memory) for the gs:// storage tests.

Our code and Ray reach it as they would reach GCS: STORAGE_EMULATOR_HOST (the variable Google's
clients read) makes `sid_ray.data.storage.filesystem_from_uri` build an anonymous pyarrow
GcsFileSystem on it, and a local Ray cluster started afterwards passes that environment to its
workers, as `tests/data/s3_server.py` does for S3.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sid_ray.data.storage import GCS_EMULATOR_ENV


def serve(host: str = "127.0.0.1") -> None:
    """Run the emulator (in memory) until killed, printing its port first; one thread per
    connection, one request at a time. Its own server is single-threaded, and pyarrow's GCS client
    keeps several connections open, so a second connection would wait behind the first's."""
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    lock = threading.Lock()

    class Handler(RequestHandler):
        def _locked(self, method: str) -> None:
            with lock:  # the emulator's storage is not thread-safe
                getattr(super(), method)()

        def do_GET(self):
            self._locked("do_GET")

        def do_POST(self):
            self._locked("do_POST")

        def do_PUT(self):
            self._locked("do_PUT")

        def do_DELETE(self):
            self._locked("do_DELETE")

        def do_PATCH(self):
            self._locked("do_PATCH")

        def log_message(self, format, *args):  # a line per request otherwise
            pass

    storage = Storage(use_memory_fs=True)
    httpd = http.server.ThreadingHTTPServer((host, 0), functools.partial(Handler, storage))
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


@contextlib.contextmanager
def gcs_server(*buckets: str) -> Iterator[str]:
    """Start the emulator in its own process (pyarrow's GCS client must not wait on a server that
    needs this process's GIL), create `buckets`, set STORAGE_EMULATOR_HOST; yields the endpoint
    URL. The environment is restored and the emulator stopped on exit."""
    pytest.importorskip(
        "gcp_storage_emulator", reason="gcp-storage-emulator (the dev extra) runs the gs:// tests"
    )
    root = str(Path(__file__).resolve().parents[2])
    code = "from tests.data.gcs_server import serve; serve()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    saved = os.environ.get(GCS_EMULATOR_ENV)
    try:
        port = int(process.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}"
        os.environ[GCS_EMULATOR_ENV] = endpoint
        for bucket in buckets:
            body = json.dumps({"name": bucket}).encode()
            request = urllib.request.Request(
                f"{endpoint}/storage/v1/b?project=sid-ray-test",
                body,
                {"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=30).close()
        yield endpoint
    finally:
        if saved is None:
            os.environ.pop(GCS_EMULATOR_ENV, None)
        else:
            os.environ[GCS_EMULATOR_ENV] = saved
        process.terminate()
        process.wait(timeout=30)


def gcs_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every object name under `prefix` in `bucket`, from the emulator's JSON API (not through
    pyarrow, which the tests check)."""
    endpoint = os.environ[GCS_EMULATOR_ENV]
    names, token = [], ""
    while True:
        query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
        with urllib.request.urlopen(f"{endpoint}/storage/v1/b/{bucket}/o?{query}", timeout=30) as response:
            page = json.loads(response.read())
        names += [item["name"] for item in page.get("items", [])]
        token = page.get("nextPageToken", "")
        if not token:
            return sorted(names)
