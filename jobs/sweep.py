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
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sid_ray.config.schema import ConfigError  # noqa: E402
from sid_ray.train.console import add_verbose_flag  # noqa: E402
from sid_ray.train.console import setup as setup_console  # noqa: E402


def start_local_cluster(console, env: dict[str, str], num_cpus: float | None) -> None:
    """A new local Ray cluster of this process (address="local": never one a stale /tmp/ray
    record points at), with its dashboard on a free port: Ray Train frees the workers of trials
    that ASHA stops through its state API, and RAY_API_SERVER_ADDRESS lets every worker find this
    cluster's dashboard on a machine that runs other Ray clusters too."""
    import socket

    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # nothing outside this machine reaches it
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    env = {**env, "RAY_API_SERVER_ADDRESS": os.environ["RAY_API_SERVER_ADDRESS"]}
    ray.init(
        address="local",
        num_cpus=num_cpus,
        object_store_memory=int(5e8) if num_cpus is not None else None,
        include_dashboard=True,
        dashboard_port=port,
        **console.ray_init_kwargs(env),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="sweep YAML (configs/sweeps/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="replace a top-level key of the sweep YAML (name, num_samples, set, ...)")  # fmt: skip
    p.add_argument("--num-cpus", type=float, default=None,
                   help="CPUs of the local Ray cluster it starts without RAY_ADDRESS (default: all)")  # fmt: skip
    add_verbose_flag(p)
    args = p.parse_args(argv)
    console = setup_console(args.verbose)
    if not args.verbose:  # MLflow's store-creation and "View run at" lines: the summary names the runs
        import mlflow  # noqa: F401  (it sets its loggers' levels when first imported)

        logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        from sid_ray.tune.spec import load_sweep

        spec = load_sweep(args.sweep, args.overrides)
        import ray

        from sid_ray.train.console import init_ray
        from sid_ray.tune.sweep import run_sweep

        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("SID_RAY_CACHE",) if k in os.environ}
            if os.environ.get("RAY_ADDRESS"):
                init_ray(console, env)  # a running cluster (ray job submit sets RAY_ADDRESS)
            else:
                start_local_cluster(console, env, args.num_cpus)
        result = run_sweep(spec, Path(args.sweep).read_text(), verbose=args.verbose)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # e.g. no trial reported the metric: the trials' errors are above
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\n{result.table}\n")
    if result.unfinished:
        print(
            f"sweep interrupted: {len(result.unfinished)} of {result.total_trials} trials unfinished; "
            "run the same command again to resume it",
            file=sys.stderr,
        )
        return 130
    best = result.best
    print(f"best trial {best['trial_id']}: {best['config']}")
    print(f"  metrics: {best['metrics']}")
    print(f"  checkpoint: {best['checkpoint']}")
    print(f"trials plot: {result.plot}")
    print(f"MLflow parent run {result.parent_run_id} in {result.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
