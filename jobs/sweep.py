"""Ray Tune sweep over learning rates and guidance, ASHA on the in-training FID, MLflow runs.

    python jobs/sweep.py configs/sweeps/digits_lr_guidance.yaml
    python jobs/sweep.py configs/sweeps/digits_lr_guidance.yaml --set num_samples=8 --set name=lr-wide
    RAY_ADDRESS=... python jobs/sweep.py ...      # a running cluster (ray job submit works too)

Running it again with the same sweep name resumes it (finished trials kept, the others resumed,
no MLflow run duplicated). At the end it prints the trials, the best one's config, metrics and
checkpoint, tags the MLflow parent run with them and writes <output_dir>/<name>/trials.png.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sid_ray.config.schema import ConfigError  # noqa: E402
from sid_ray.train.console import add_verbose_flag  # noqa: E402
from sid_ray.train.console import setup as setup_console  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="sweep YAML (configs/sweeps/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="replace a top-level key of the sweep YAML (name, num_samples, set, ...)")  # fmt: skip
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs of the local Ray cluster it starts")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    console = setup_console(args.verbose)
    try:
        from sid_ray.tune.spec import load_sweep

        spec = load_sweep(args.sweep, args.overrides)
        import ray

        from sid_ray.train.console import init_ray
        from sid_ray.tune.sweep import run_sweep

        if not ray.is_initialized():
            if not os.environ.get("RAY_ADDRESS"):
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster of this process
            if args.num_cpus is not None:
                # address="local": a new cluster, never one a stale /tmp/ray record points at
                ray.init(
                    address="local",
                    num_cpus=args.num_cpus,
                    object_store_memory=int(5e8),
                    include_dashboard=False,
                )
            else:
                init_ray(console, {k: os.environ[k] for k in ("SID_RAY_CACHE",) if k in os.environ})
        result = run_sweep(spec, Path(args.sweep).read_text())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # e.g. no trial reported the metric: the trials' errors are above
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\n{result.table}\n")
    best = result.best
    print(f"best trial {best['trial_id']}: {best['config']}")
    print(f"  metrics: {best['metrics']}")
    print(f"  checkpoint: {best['checkpoint']}")
    print(f"trials plot: {result.plot}")
    print(f"MLflow parent run {result.parent_run_id} in {result.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
