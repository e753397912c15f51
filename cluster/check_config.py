"""Refuse a cluster file that still holds a placeholder (YOUR_ORG, YOUR_EFS_ID, ...).

    python cluster/check_config.py cluster/aws-gpu.yaml && ray up -y cluster/aws-gpu.yaml

The shipped files name the account-specific values with YOUR_* placeholders. Ray's own validation
takes them (they are strings); the launch would then fail much later, on a node, with an error
that names none of them. This prints, for each placeholder left, the YAML field that holds it and
what to put there, and exits 2. The head node runs it again on the configuration `ray up` sent it
(`~/ray_bootstrap_config.yaml`, first of the setup commands) so that a skipped check still stops
the setup with this message. Also used by tests/cluster/test_launcher_yamls.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

PLACEHOLDER = re.compile(r"YOUR_[A-Z0-9_]+")

WHAT_TO_PUT = {
    "YOUR_ORG": "the GitHub owner of your sid_ray fork or copy (the clone URL must reach PROJECT_REF)",
    "YOUR_EFS_ID": "the id of your EFS file system (fs-0123456789abcdef0) in the cluster's region",
    "YOUR_GCP_PROJECT": "your Google Cloud project id",
    "YOUR_FILESTORE_IP": "the IP address of your Filestore instance (share `runs`)",
    "YOUR_REGISTRY": "the container registry you pushed the cluster/Dockerfile image to",
}


def _fields(node, path: str = ""):
    """(dotted field path, string value) of every string in a parsed YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _fields(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _fields(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def placeholders(documents: list) -> list[str]:
    """One message per placeholder left: the field, the placeholder and what to put there."""
    found = []
    for document in documents:
        for path, value in _fields(document):
            for name in dict.fromkeys(PLACEHOLDER.findall(value)):
                hint = WHAT_TO_PUT.get(name, "the value this placeholder stands for")
                found.append(f"{path}: replace {name} with {hint}")
    return found


def check_file(path: str | Path) -> list[str]:
    """The placeholder messages of a YAML file (every document of a multi-document file)."""
    return placeholders(list(yaml.safe_load_all(Path(path).read_text())))


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    if not paths:
        print("usage: python cluster/check_config.py CLUSTER.yaml [...]", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        problems = check_file(path)
        for problem in problems:
            print(f"error: {path}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
    if failed:
        print("edit these fields (cluster/README.md, one-time setup), then launch", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
