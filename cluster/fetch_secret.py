"""Write a secret from a secret store to a file of mode 600, printing nothing of it.

Run by the setup commands of cluster/aws-gpu.yaml and cluster/gcp-gpu.yaml on every node: the Ray
auth token to ~/.ray/auth_token (where `RAY_AUTH_MODE=token ray start` finds it) and the Hugging
Face token to $HF_HOME/token (where huggingface_hub finds it). No secret is in a file of this
repository, on a command line, or in the environment a job inherits:

    python cluster/fetch_secret.py aws sid-ray/ray-auth-token                       # Secrets Manager id
    python cluster/fetch_secret.py gcp projects/P/secrets/sid-ray-auth-token         # Secret Manager name
    python cluster/fetch_secret.py aws sid-ray/hf-token --to ~/.cache/huggingface/token
    python cluster/fetch_secret.py file /path/to/token --to /tmp/token               # (tests)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def read_aws(secret_id: str) -> str:
    import boto3

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def read_gcp(secret_name: str) -> str:
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    version = client.access_secret_version(name=f"{secret_name}/versions/latest")
    return version.payload.data.decode()


def read_file(path: str) -> str:
    return Path(path).read_text()


SOURCES = {"aws": read_aws, "gcp": read_gcp, "file": read_file}


def write_token(token: str, destination: Path) -> None:
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # created 600 before the token is written: no moment where another user could read it
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("secret", help="secret id / name / file of the token")
    parser.add_argument(
        "--to",
        default=str(Path.home() / ".ray" / "auth_token"),
        help="file to write (default: Ray's token path)",
    )
    args = parser.parse_args(argv)
    token = SOURCES[args.source](args.secret)
    if not token.strip():
        print(f"error: secret {args.secret} is empty", file=sys.stderr)
        return 2
    write_token(token, Path(args.to))
    print(f"secret {args.secret} written to {args.to} (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
