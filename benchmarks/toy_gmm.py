"""SiD on the exact 2-D, 8-mode Gaussian-mixture teacher: prints energy distances and mode masses.

    python benchmarks/toy_gmm.py            # the issue-2 table (a few minutes on 2 cores)
    python benchmarks/toy_gmm.py --kimg 50  # shorter / longer runs
    python benchmarks/toy_gmm.py --steps 4 --set train.seed=1 --set train.micro_batch_size=128
        # one student, another noise draw (micro-batch 128 = the 2-worker noise keys 0 and 1)

Rows: the initial generator (= the teacher copy, one step), SiD 1-step and 4-step students,
and the exact teacher sampled with 4 and 32 Euler steps; all against exact samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sid_ray.config import load_config  # noqa: E402
from sid_ray.eval.toy_metrics import (  # noqa: E402
    energy_distance,
    generator_samples,
    mode_masses,
    teacher_euler_samples,
    worst_relative_mass_error,
)
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.toys.gaussian_mixture import label_conditioning  # noqa: E402
from sid_ray.train.local import run_local  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The recipe, in one place: configs/gmm_ring.yaml (found by the sweeps in
# benchmarks/results/2026-11-22-toy-gmm.md). Its layout is 2 workers x micro-batch 128; the
# single-process runs here take the same global batch as one micro-batch (noise key 0 only).
RECIPE = ROOT / "configs" / "gmm_ring.yaml"
SINGLE_PROCESS = ["train.num_workers=1", "train.micro_batch_size=256", "train.log_every=200"]
# the marginal (the null condition) is what the mode-mass and energy-distance bars measure
UNCONDITIONAL = [""]


def toy_config(num_steps: int, kimg: float | None = None, extra: list[str] = ()):
    """The recipe on one process; `kimg` overrides its length, `extra` anything else."""
    length = [] if kimg is None else [f"train.total_kimg={kimg}"]
    return load_config(RECIPE, [*SINGLE_PROCESS, f"sid.num_steps={num_steps}", *length, *extra])


def main() -> None:
    torch.set_num_threads(1)  # tiny MLPs: one thread beats two contending ones
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kimg", type=float, default=None, help="run length (default: the recipe's)")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="student step counts to distill")
    args = parser.parse_args()
    adapter = build_adapter(toy_config(4, args.kimg))
    mixture = adapter.mixture
    null = torch.full((args.samples,), 8)
    null_cond = label_conditioning(null, 8)
    truth = mixture.sample(null, torch.Generator().manual_seed(99)).float()
    rows = {}
    initial = adapter.make_trainable_copy("generator")
    rows["initial generator (teacher copy, 1 step)"] = generator_samples(initial, 1, null_cond, 2, 1)
    for k in args.steps:
        config = toy_config(k, args.kimg, args.set)
        result = run_local(config, prompts=UNCONDITIONAL, write_config=False)
        rows[f"SiD {k}-step ({config.train.total_kimg:g} kimg, {result.seconds:.0f} s)"] = generator_samples(
            result.generator, k, null_cond, 2, 1
        )
    for steps in (4, 32):
        rows[f"exact teacher, {steps} Euler steps"] = teacher_euler_samples(
            adapter.teacher, steps, null_cond, 2, 1
        )
    weights = mixture.marginal_weights
    print(
        f"\n{'samples':45s} {'energy dist':>11s} {'worst mode err':>14s}  masses (true {weights.numpy().round(3)})"
    )
    for name, x in rows.items():
        print(
            f"{name:45s} {energy_distance(x, truth):11.4f} {worst_relative_mass_error(x, mixture, weights):14.3f}  "
            f"{mode_masses(x, mixture).numpy().round(3)}"
        )
    print(
        f"{'exact samples (another seed)':45s} {energy_distance(mixture.sample(null, torch.Generator().manual_seed(7)).float(), truth):11.4f}"
    )


if __name__ == "__main__":
    main()
