"""The README's first command: distill the digits teacher and print the quality table.

    python jobs/demo.py                       # local Ray, 2 CPU workers, DeepSpeed, MLflow sqlite
    python jobs/demo.py --set train.total_kimg=38.4
    python jobs/demo.py --config configs/demo_digits_data_aided.yaml   # SiDA: real digits too

Runs the product path end to end: Ray Data prompts -> Ray Train + DeepSpeed -> checkpoints
(with the consolidated generator) -> evaluation of the teacher (32 and 4 Euler steps, 32 ancestral)
and the student (1 and 4 steps) -> table, sample grid and FID/alignment-vs-kimg curve -> MLflow.
Starting it again with the same run name resumes (and then re-evaluates) that run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sid_ray.config import ConfigError, load_config  # noqa: E402
from sid_ray.train.console import add_verbose_flag  # noqa: E402
from sid_ray.train.console import setup as setup_console  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "demo_digits.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="run config (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    console = setup_console(args.verbose)  # before ray, deepspeed and transformers are imported
    os.chdir(ROOT)  # the config's relative paths (runs/, sqlite:///runs/...) are the repository's
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not os.environ.get("RAY_ADDRESS"):
        # the local cluster this process starts and stops; a real cluster keeps its token auth
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from sid_ray.eval.digits_metrics import DigitsQuality
    from sid_ray.eval.prompts import digits_prompt_set
    from sid_ray.eval.run_report import evaluate_run, log_report_to_mlflow
    from sid_ray.models.registry import adapter_class, build_adapter
    from sid_ray.train.launcher import launch
    from sid_ray.train.run_storage import checkpoint_storage

    if config.data.images:  # the digits teacher writes its own shards (data-aided demo) on first use
        adapter_class(config.model.name).ensure_images(config.data.images)
    result = launch(config, console=console)
    adapter = build_adapter(config)
    fs, checkpoints = checkpoint_storage(config)  # the run folder, or train.storage_path's bucket
    report = evaluate_run(
        config,
        adapter,
        checkpoints,
        digits_prompt_set(config.eval.num_samples, config.eval.seed),
        DigitsQuality(),
        result.run_dir / "eval",
        fs=fs,
    )
    run_id = log_report_to_mlflow(config, report, report.run_id, result.export_dir)
    print(f"\n{report.table}\n")
    print(f"sample grid:   {report.grid}")
    print(f"quality curve: {report.curve}")
    print(
        f"exported generator (stock diffusers FluxPipeline, {config.sid.num_steps} steps): {result.export_dir}"
    )
    print(
        f"MLflow run {run_id} in {config.tracking.mlflow_uri} (mlflow ui --backend-store-uri {config.tracking.mlflow_uri})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
