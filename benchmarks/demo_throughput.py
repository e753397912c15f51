"""The demo's training rate on this machine: one process against Ray + 2 DeepSpeed ZeRO-3 workers.

Both paths train the same config (configs/demo_digits.yaml unless --config says otherwise) for
the same kimg from the same seed; only the machinery differs (`run_local`: plain torch Adam, the
2 ranks emulated by accumulation; `launch`: the Ray Train workers, Ray Data's prompt stream,
DeepSpeed engines, per-row reductions and reports, checkpoints at the config's cadence).

    python benchmarks/demo_throughput.py                   # 1.6 kimg each, the demo's settings
    python benchmarks/demo_throughput.py --kimg 3.2 --set train.zero_stage=2

Printed per path: the training rate (median img/s over the logged windows after the first,
which holds compilation-free warm-up and the first checkpoint's set-up), the wall time of the
whole call (start-up included) and the ratio single / Ray.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sid_ray.config import load_config  # noqa: E402


def configured(args, out: Path):
    overrides = [
        f"train.total_kimg={args.kimg}",
        f"output_dir={out / 'runs'}",
        f"tracking.mlflow_uri=sqlite:///{out / 'mlflow.db'}",
        "eval.every_kimg=0",
        *args.overrides,
    ]
    return load_config(args.config, overrides)


def single_process(config) -> tuple[float, float]:
    """(median img/s over the log windows after the first, wall seconds of the call)."""
    from sid_ray.data.prompts import read_prompts_counted
    from sid_ray.models.registry import default_prompts
    from sid_ray.train.local import run_local

    stamps: list[tuple[float, float]] = []  # (time, kimg) at each logged row
    start = time.perf_counter()
    # the prompts as the launcher reads them; the read's Ray Data cluster is shut down after it, so
    # that the timed loop runs without Ray beside it
    prompts, _ = read_prompts_counted(config.data, default_prompts(config.model))
    import ray

    ray.shutdown()
    run_local(
        config,
        prompts=prompts,
        log=None,
        on_log=lambda row, _: stamps.append((time.perf_counter(), row["kimg"])),
    )
    wall = time.perf_counter() - start
    rates = [1000 * (k1 - k0) / (t1 - t0) for (t0, k0), (t1, k1) in itertools.pairwise(stamps)]
    return statistics.median(rates[1:] or rates), wall


def ray_workers(config) -> tuple[float, float]:
    from sid_ray.train.launcher import launch

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the local cluster this call starts and stops
    start = time.perf_counter()
    result = launch(config, show_progress=False)
    wall = time.perf_counter() - start
    rates = [row["img_per_s"] for row in result.rows if "img_per_s" in row]
    return statistics.median(rates[1:] or rates), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo_digits.yaml"))
    parser.add_argument("--kimg", type=float, default=1.6, help="images (thousands) each path trains")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    args = parser.parse_args()
    os.chdir(ROOT)  # the config's relative paths (prompts) are the repository's
    rows = []
    with tempfile.TemporaryDirectory(prefix="demo-throughput-") as tmp:
        for name, run in (("one process", single_process), ("Ray, 2 ZeRO workers", ray_workers)):
            config = configured(args, Path(tmp) / name.split()[0].strip(",").lower())
            rate, wall = run(config)
            rows.append((name, rate, wall))
            print(f"{name}: {rate:.1f} img/s training, {wall:.0f} s for {args.kimg:g} kimg", flush=True)
    (_, single, _), (_, distributed, _) = rows
    print("\n| path | img/s (training) | wall s (start-up included) |\n|---|---|---|")
    for name, rate, wall in rows:
        print(f"| {name} | {rate:.1f} | {wall:.0f} |")
    print(f"\nratio one process / Ray: {single / distributed:.2f}x")


if __name__ == "__main__":
    main()
