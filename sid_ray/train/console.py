"""What a person sees in the terminal: the progress line, the table, errors; the rest on demand.

Quiet (the jobs' default): the driver prints its own lines only. Ray keeps the workers' and
actors' output in its log files instead of echoing it (per-rank `Reporting training result` dicts,
DeepSpeed start-up logs, checkpoint-writing bars, actor warnings), and the library warnings known
to be harmless for these runs are hidden, on the driver and (through a Ray worker setup hook) in
every worker, by their category and message: any other warning still shows. Errors are not
filtered: a failing worker's traceback comes back in the exception Ray raises on the driver.
`--verbose` (`setup(verbose=True)`) changes nothing, so Ray and the libraries print as they do.

Call `setup()` first thing in a job, before ray, deepspeed or transformers are imported: some
of these read their settings from the environment once, at import.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass

# (category, message regex): warnings that say nothing a user of these jobs can act on
KNOWN_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # DeepSpeed's ZeRO-3 calls the collectives torch renamed; once per call site and rank
    (FutureWarning, r"`torch\.distributed\.\w+` is deprecated"),
    # DeepSpeed's barrier without a device id; the device is the one Ray Train set
    (UserWarning, r"barrier\(\): using the device under current context"),
    # the shared-base LoRA puts a second adapter (F's) on G's base on purpose
    (UserWarning, r"Already found a `peft_config` attribute in the model"),
)

# (logger, message regex): the same for library messages that go through `logging`
KNOWN_HARMLESS_LOG_RECORDS: tuple[tuple[str, str], ...] = (
    # the driver never trains, and a CPU worker is what a CPU run asked for
    ("DeepSpeed", r"Setting accelerator to CPU"),
    # the teachers' text encoders need no image processor
    ("transformers.utils.import_utils", r"requires torchvision \(not installed\)"),
    # the runs turn Ray Data's bars off themselves: the progress line is ours
    ("ray.data._internal.progress", r"Progress bars disabled"),
    # Ray Train's clean-up actor polls the state API, which a busy (2-core) head answers late
    (
        "ray.train.v2._internal.execution.controller.placement_group_cleaner",
        r"Failed to query Ray Train Controller actor state",
    ),
)

# read once at import by Ray Data (the INFO lines and, in a terminal, the bars of the driver's
# prompt-file read) and huggingface_hub (the "Loading weights" bars of the evaluation's encoders)
QUIET_DRIVER_ENV = {
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

WORKER_SETUP_HOOK = f"{__name__}.hide_known_warnings"


@dataclass(frozen=True)
class Console:
    """The console policy of one run, from the job's `--verbose` flag."""

    verbose: bool = False

    @property
    def quiet(self) -> bool:
        return not self.verbose

    def ray_init_kwargs(self, env_vars: dict[str, str]) -> dict:
        """`ray.init` options: when quiet, worker output stays in Ray's log files, and every
        worker process of the job installs the same warning filters as the driver."""
        runtime_env: dict = {"env_vars": dict(env_vars)}
        if self.verbose:
            return {"runtime_env": runtime_env}
        runtime_env["worker_process_setup_hook"] = WORKER_SETUP_HOOK
        return {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": logging.WARNING}


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """The one `--verbose` of every job (so that the four jobs cannot drift apart)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print everything: the Ray workers' output (per-rank reports, DeepSpeed and library "
        "logs) and the library warnings known to be harmless, which are hidden by default",
    )


def setup(verbose: bool = False) -> Console:
    """The jobs' one call, at start: hides the known-harmless noise unless `verbose`."""
    console = Console(verbose=verbose)
    if console.quiet:
        for key, value in QUIET_DRIVER_ENV.items():
            os.environ.setdefault(key, value)
        hide_known_warnings()
    return console


def hide_known_warnings() -> None:
    """Filters for the known-harmless warnings and log records only (the driver and, as Ray's
    worker setup hook, every worker process); idempotent."""
    for category, message in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, message in KNOWN_HARMLESS_LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.pattern == message for f in logger.filters):
            logger.addFilter(DropMessage(message))


class DropMessage(logging.Filter):
    """Drops the records of one logger whose message matches a regex (kept on the logger object,
    which the libraries' own logging set-up, run later at their import, leaves in place)."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern
        self._regex = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._regex.search(record.getMessage())


def init_ray(console: Console | None, env_vars: dict[str, str]) -> None:
    """`ray.init` under the console policy (None: Ray's defaults, as for tests and notebooks)."""
    import ray

    ray.init(**(console or Console(verbose=True)).ray_init_kwargs(env_vars))
    if console is not None and console.quiet:
        print(f"Ray worker logs: {_ray_logs_dir()} (--verbose prints them here)", file=sys.stderr)


def _ray_logs_dir() -> str:
    """The session's log folder (on a cluster: that folder on each node)."""
    try:
        from ray._private.worker import _global_node

        return _global_node.get_logs_dir_path()
    except Exception:  # a private API: the path is only a hint
        return "/tmp/ray/session_latest/logs"
