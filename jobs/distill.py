"""The shared command line of the distillation jobs: parse, build, run.

    python jobs/distill_flux.py --config configs/flux_dev.yaml --set train.total_kimg=100
    ray job submit --working-dir . -- python jobs/distill_flux.py --config ...

`ray.init()` inside the launcher connects to RAY_ADDRESS when set (a `ray job submit` driver
always has it) and otherwise starts a local cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

# `python jobs/x.py` puts jobs/ (not the repository) on sys.path; under `ray job submit` the
# repository is the uploaded working dir, which must win over any installed copy.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sid_ray.config.fields import field_doc  # noqa: E402
from sid_ray.config.io import load_config  # noqa: E402
from sid_ray.config.schema import ConfigError, RunConfig  # noqa: E402
from sid_ray.train.console import add_verbose_flag  # noqa: E402
from sid_ray.train.console import setup as setup_console  # noqa: E402


def config_fields(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """'dotted.path (default): doc' for every field, for --help."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines += config_fields(type(default), f"{prefix}{f.name}.")
        else:
            lines.append(f"  {prefix}{f.name} = {default!r}: {field_doc(f)}")
    return lines


def parser(description: str, default_config: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config fields (set with --set dotted.path=value):\n" + "\n".join(config_fields()),
    )
    p.add_argument(
        "--config",
        default=default_config,
        help=f"YAML file of the run (default: {default_config}); --set overrides it",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one config field, e.g. --set train.total_kimg=10 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no live progress line (the summary still prints)")
    add_verbose_flag(p)
    return p


def main(
    argv: list[str] | None = None,
    description: str = "Distill a flow-matching teacher into a few-step generator with SiD.",
    default_config: str | None = None,
    families: tuple[str, ...] = (),
) -> int:
    """`families`: the adapter families (`TeacherAdapter.family`) this job accepts; empty = all."""
    args = parser(description, default_config).parse_args(argv)
    console = setup_console(args.verbose)  # before ray, deepspeed and transformers are imported
    try:
        config = load_config(args.config, args.overrides)
        from sid_ray.models.registry import adapter_class
        from sid_ray.train.launcher import check_teacher, launch

        if families and adapter_class(config.model.name).family not in families:
            raise ConfigError(
                f"model.name: {config.model.name!r} is not a {'/'.join(families)} teacher; "
                "use jobs/distill.py for other families"
            )

        check_teacher(config)  # a missing teacher folder fails here, before Ray starts anything
        launch(config, show_progress=not args.quiet, console=console)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
