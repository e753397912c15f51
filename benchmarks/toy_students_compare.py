"""Compare saved toy students on one exact teacher, with the estimator's own noise measured.

The few-step test and the probes score a student on one draw of 4,000 exact samples and one of
4,000 generated ones. On gmm-ring that energy distance moves by 0.0004-0.0009 (one standard
deviation) from draw to draw of the same two generators, more than the margins it was asked to
decide. Here every draw takes fresh exact samples and fresh generator noise; each generator is
scored on the same exact samples (so the differences are paired), and the mean and spread over
draws are printed beside the exact-vs-exact floor and the teacher's 4-step Euler sampler.

    python benchmarks/few_step_probes.py --teacher gmm-d3 --steps 1 --save one.pt
    python benchmarks/few_step_probes.py --teacher gmm-d3 --save four.pt
    python benchmarks/toy_students_compare.py --teacher gmm-d3 one.pt:1 four.pt:4 --samples 16000 --draws 4

A student trained with `sid.rollout_time_shift` S (`few_step_probes.py --times-shift S`) is named
FILE:STEPS:S, so that its roll-out runs at the shifted times it was trained on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.toy_gmm import load_saved_student, toy_config  # noqa: E402
from sid_ray.eval.toy_metrics import (  # noqa: E402
    energy_distance,
    generator_samples,
    teacher_euler_samples,
    worst_relative_mass_error,
)
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.toys.gaussian_mixture import label_conditioning  # noqa: E402


def _summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", required=True)
    parser.add_argument("generators", nargs="+", metavar="FILE:STEPS", help="torch.save'd generators")
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--draws", type=int, default=4)
    args = parser.parse_args()

    adapter = build_adapter(toy_config(4, teacher=args.teacher))
    mixture = adapter.mixture
    null = torch.full((args.samples,), mixture.num_classes)
    cond = label_conditioning(null, mixture.num_classes)
    students = [load_saved_student(spec) for spec in args.generators]
    rows: dict[str, dict[str, list[float]]] = {}
    for draw in range(args.draws):
        truth = mixture.sample(null, torch.Generator().manual_seed(1000 + draw)).float()
        other = mixture.sample(null, torch.Generator().manual_seed(2000 + draw)).float()
        scored = {"floor (exact vs exact)": (other, None)}
        euler = teacher_euler_samples(adapter.teacher, 4, cond, mixture.dim, 500 + draw)
        scored["4-step Euler (teacher)"] = (euler, None)
        for name, steps, shift, generator in students:
            x = generator_samples(generator, steps, cond, mixture.dim, 500 + draw, shift)
            scored[f"{name} ({steps}-step{f', times shift {shift:g}' if shift != 1.0 else ''})"] = (
                x,
                worst_relative_mass_error(x, mixture, mixture.marginal_weights),
            )
        first = None
        for label, (x, mass) in scored.items():
            row = rows.setdefault(label, {"ed": [], "mass": [], "vs first student": []})
            row["ed"].append(energy_distance(x, truth))
            if mass is not None:
                row["mass"].append(mass)
                first = row["ed"][-1] if first is None else first
                row["vs first student"].append(row["ed"][-1] - first)
    print(
        f"{args.teacher}: {args.draws} draws of {args.samples} samples (mean ± standard deviation over draws)"
    )
    print("| sampler | energy distance | minus the first student's (paired) | worst mode-mass error |")
    print("|---|---|---|---|")
    for label, row in rows.items():
        paired = _summary(row["vs first student"]) if row["mass"] else ""
        mass = _summary(row["mass"]) if row["mass"] else ""
        print(f"| {label} | {_summary(row['ed'])} | {paired} | {mass} |", flush=True)


if __name__ == "__main__":
    main()
