"""A real S3-compatible server on loopback (moto's server mode) for the object-storage tests.

Ray Train, Ray Data and our own pyarrow reads reach it as they would reach S3: pyarrow's
S3FileSystem takes the endpoint, keys and region from the environment (AWS_ENDPOINT_URL, ...),
and a local Ray cluster started afterwards passes that environment to its workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from tests.local_ray import local_ray as shared_local_ray

# test-only keys of the loopback server; they authenticate nothing outside this process
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "sid-ray-test",
    "AWS_SECRET_ACCESS_KEY": "sid-ray-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """Start the server, create `buckets`, point the environment at it; yields the endpoint URL.
    The environment is restored and the server stopped on exit."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def s3_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every object key under `prefix` in `bucket` (through the server the environment names)."""
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@contextlib.contextmanager
def local_ray():
    """A new local Ray cluster (2 CPUs), shut down on exit. Started inside `s3_server`, its workers,
    Ray Data tasks and actors inherit the server's endpoint and keys."""
    with shared_local_ray(num_cpus=2, object_store_memory=500_000_000):
        yield
