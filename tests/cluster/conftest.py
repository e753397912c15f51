"""Shared helpers of the cluster/ tests."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SHA = re.compile(r"\b[0-9a-f]{40}\b")


def load_yaml(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


def is_commit_of_this_repository(sha: str) -> bool:
    out = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=ROOT, capture_output=True)
    return out.returncode == 0


def job_arguments(command: str) -> list[str]:
    """The arguments after `python jobs/<x>.py` in a shell command line."""
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.startswith("jobs/") and w.endswith(".py"))
    return words[start:]


def config_of(arguments: list[str]):
    """The RunConfig a job's `--config` and `--set` arguments build."""
    from sid_ray.config import load_config

    config = arguments[arguments.index("--config") + 1]
    sets = [arguments[i + 1] for i, w in enumerate(arguments) if w == "--set"]
    return load_config(ROOT / config, sets)
