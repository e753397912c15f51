"""SiD on an exact Gaussian-mixture teacher: prints energy distances and mode masses.

    python benchmarks/toy_gmm.py                      # the ring, 1- and 4-step students
    python benchmarks/toy_gmm.py --teacher gmm-d5     # a generated preset (sid_ray.toys.mixture_family)
    python benchmarks/toy_gmm.py --teacher gmm:dim=5,modes=6,classes=3,seed=1   # any generator spec
    python benchmarks/toy_gmm.py --kimg 50            # shorter / longer runs
    python benchmarks/toy_gmm.py --steps 4 --set train.seed=1 --set train.micro_batch_size=128
        # one student, another noise draw (micro-batch 128 = the 2-worker noise keys 0 and 1)

Rows: the initial generator (= the teacher copy, one step), the SiD students, and the exact
teacher sampled with 4 and 32 Euler steps; all against exact samples of the null condition (the
marginal). Mode masses are mean posterior responsibilities under the true mixture. Below the
table, each K-step student's energy distance after every k = 1..K steps of its roll-out (the
intermediate outputs few-step SiD trains on), and that of their uniform mixture.
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
    per_step_samples,
    teacher_euler_samples,
    worst_relative_mass_error,
)
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.toys.gaussian_mixture import label_conditioning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The recipe, in one place: configs/gmm_ring.yaml (found by the sweeps in
# benchmarks/results/2026-11-22-toy-gmm.md and 2026-12-02-few-step-gmm.md). Its layout is
# 2 workers x micro-batch 128; the single-process runs here take the same global batch as one
# micro-batch (noise key 0 only).
RECIPE = ROOT / "configs" / "gmm_ring.yaml"
SINGLE_PROCESS = ["train.num_workers=1", "train.micro_batch_size=256", "train.log_every=200"]
# the marginal (the null condition) is what the mode-mass and energy-distance bars measure
UNCONDITIONAL = [""]
TRUTH_SEED, OTHER_SEED, SAMPLE_SEED = 99, 7, 1


def toy_config(num_steps: int, kimg: float | None = None, extra: list[str] = (), teacher: str | None = None):
    """The recipe on one process for a `num_steps`-step student (the same recipe for every K and
    teacher); `kimg` overrides its length, `teacher` its model.name (a registered name or a
    'gmm:' generator spec), `extra` anything else."""
    length = [] if kimg is None else [f"train.total_kimg={kimg}"]
    model = [] if teacher is None else [f"model.name={teacher}"]
    return load_config(RECIPE, [*SINGLE_PROCESS, *model, f"sid.num_steps={num_steps}", *length, *extra])


def references(adapter, samples: int):
    """(null conditioning, exact samples, another exact draw) of the adapter's mixture."""
    mixture = adapter.mixture
    null = torch.full((samples,), mixture.num_classes)
    truth = mixture.sample(null, torch.Generator().manual_seed(TRUTH_SEED)).float()
    other = mixture.sample(null, torch.Generator().manual_seed(OTHER_SEED)).float()
    return label_conditioning(null, mixture.num_classes), truth, other


def load_saved_student(spec: str) -> tuple[str, int, float, torch.nn.Module]:
    """(path, K, roll-out time shift, generator) of a `torch.save`d toy student named
    FILE:STEPS[:SHIFT] (the form toy_students_compare.py and toy_mode_tails.py take)."""
    path, steps, *shift = spec.split(":")
    return path, int(steps), float(shift[0]) if shift else 1.0, torch.load(path, weights_only=False)


def per_step_distances(
    generator, num_steps: int, cond, truth: torch.Tensor, time_shift: float = 1.0
) -> tuple[list[float], float]:
    """Energy distance of the k-step output for k = 1..K, and of their uniform mixture."""
    outputs = per_step_samples(generator, num_steps, cond, truth.shape[1], SAMPLE_SEED, time_shift)
    pick = torch.randperm(num_steps * truth.shape[0], generator=torch.Generator().manual_seed(3))
    mixture = torch.cat(outputs)[pick[: truth.shape[0]]]
    return [energy_distance(x, truth) for x in outputs], energy_distance(mixture, truth)


def main() -> None:
    # imported here: the helpers above (tests, sweeps) need no training loop and its evaluators
    from sid_ray.train.local import run_local

    torch.set_num_threads(1)  # tiny MLPs: one thread beats two contending ones
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--teacher", default=None, help="registered name or gmm: spec (default: the recipe's)"
    )
    parser.add_argument("--kimg", type=float, default=None, help="run length (default: the recipe's)")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="student step counts to distill")
    args = parser.parse_args()
    adapter = build_adapter(toy_config(4, args.kimg, args.set, args.teacher))
    mixture, dim = adapter.mixture, adapter.mixture.dim
    null_cond, truth, other = references(adapter, args.samples)
    rows, per_step = {}, {}
    rows["initial generator (teacher copy, 1 step)"] = generator_samples(
        adapter.make_trainable_copy("generator"), 1, null_cond, dim, SAMPLE_SEED
    )
    for k in args.steps:
        config = toy_config(k, args.kimg, args.set, args.teacher)
        result = run_local(config, prompts=UNCONDITIONAL, write_config=False)
        name = f"SiD {k}-step ({config.train.total_kimg:g} kimg, {result.seconds:.0f} s)"
        shift = config.sid.rollout_time_shift
        rows[name] = generator_samples(result.generator, k, null_cond, dim, SAMPLE_SEED, shift)
        per_step[name] = per_step_distances(result.generator, k, null_cond, truth, shift)
    for steps in (4, 32):
        rows[f"exact teacher, {steps} Euler steps"] = teacher_euler_samples(
            adapter.teacher, steps, null_cond, dim, SAMPLE_SEED
        )
    rows["exact samples (another seed)"] = other
    weights = mixture.marginal_weights
    print(f"\nteacher {adapter.name}: dim {dim}, {len(weights)} modes, {mixture.num_classes} classes")
    print(
        f"{'samples':45s} {'energy dist':>11s} {'worst mode err':>14s}  masses (true {weights.numpy().round(3)})"
    )
    for name, x in rows.items():
        print(
            f"{name:45s} {energy_distance(x, truth):11.4f} {worst_relative_mass_error(x, mixture, weights):14.3f}  "
            f"{mode_masses(x, mixture).numpy().round(3)}"
        )
    print("\nenergy distance after k roll-out steps, k = 1..K (and of the uniform mixture over k):")
    for name, (distances, mixed) in per_step.items():
        print(f"{name:45s} {' '.join(f'{d:.4f}' for d in distances)}  (mixture {mixed:.4f})")


if __name__ == "__main__":
    main()
