"""How much memory per GPU a run needs, and the fewest GPUs that hold it, before launching anything.

    python jobs/plan.py --config configs/flux_dev.yaml --set model.lora.mode=shared_base
    python jobs/plan.py --config configs/flux_dev.yaml --gpu-memory-gib 140 --gpus 4 8 16
    python jobs/plan.py --table   # every registered teacher x mode x resolution (cluster/README.md),
                                  # on configs/flux_dev.yaml's other settings unless --config says

The parameter counts come from the teacher's released architecture on the meta device (no
download, no weights); the model is `sid_ray/train/memory_plan.py`'s docstring. Exits 2 with the
launcher's own message, naming what to change, when the configured run
(`train.num_workers` GPUs of `--gpu-memory-gib`) does not fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sid_ray.config.io import load_config  # noqa: E402
from sid_ray.config.schema import ConfigError  # noqa: E402

# what the plan assumes when neither --gpu-memory-gib nor train.gpu_memory_gib says (A100/H100 80 GB)
DEFAULT_GPU_MEMORY_GIB = 80.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file of the run; --set overrides it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    p.add_argument(
        "--gpu-memory-gib",
        type=float,
        default=None,
        help=f"memory of one GPU (default: train.gpu_memory_gib, else {DEFAULT_GPU_MEMORY_GIB:g})",
    )
    p.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4, 8, 16], help="GPU counts in the table")
    p.add_argument("--table", action="store_true", help="the sizing table of every registered teacher")
    return p.parse_args(argv)


def plan_one(config, gpu_memory_gib: float, gpu_counts: list[int]) -> None:
    from sid_ray.models.architecture import describe
    from sid_ray.train.memory_plan import check_fits
    from sid_ray.train.memory_report import describe_run, gpu_table, smallest_line

    arch = describe(config.model)
    print(describe_run(config, arch))
    print(gpu_table(config, arch, sorted({*gpu_counts, config.train.num_workers}), gpu_memory_gib))
    print(smallest_line(config, arch, gpu_memory_gib))
    train = dataclasses.replace(config.train, use_gpu=True, gpu_memory_gib=gpu_memory_gib)
    check_fits(dataclasses.replace(config, train=train))  # raises, naming what to change
    print(
        f"the configured run fits: train.num_workers={config.train.num_workers} GPUs of {gpu_memory_gib:g} GiB"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        # the table's other settings (precision, checkpointing, rank) are the shipped FLUX recipe's
        config_file = args.config or (str(ROOT / "configs/flux_dev.yaml") if args.table else None)
        config = load_config(config_file, args.overrides)
        memory = args.gpu_memory_gib or config.train.gpu_memory_gib or DEFAULT_GPU_MEMORY_GIB
        if args.table:
            from sid_ray.train.memory_report import sizing_table

            print(sizing_table(config, [(512, 4), (1024, 2)], [80.0, 140.0]))
        else:
            plan_one(config, memory, args.gpus)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
