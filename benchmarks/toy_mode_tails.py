"""Where a saved toy student's excess mode mass comes from: the mode's core or samples far out.

A mode's mass is its mean posterior responsibility under the true mixture. A sample that lands
between modes is far from every mean, and its responsibility goes mostly to the widest mode
nearby; so a student that bridges its modes over-weights the wide ones without any mode's core
being too heavy. This splits each mode's mass by the sample's scaled squared distance to the
mode's mean, d2 = |x - mu_m|^2 / (s_m^2 dim), which is chi-square(dim) / dim on exact samples
(median 0.69 at dim 2, 0.92 at dim 8; beyond 3 lie 5% of them at dim 2, 0.2% at dim 8):

    python benchmarks/toy_mode_tails.py --teacher gmm-d8 four.pt:4 one.pt:1 --samples 64000

prints, for the exact teacher and each FILE:STEPS, every mode's relative mass error, its
median d2, the share of its samples beyond d2 = 3, and the mass it takes from beyond d2 = 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.toy_gmm import load_saved_student, toy_config  # noqa: E402
from sid_ray.eval.toy_metrics import generator_samples  # noqa: E402
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.toys.gaussian_mixture import GaussianMixture, label_conditioning  # noqa: E402

SAMPLE_SEED = 5


def mode_tails(samples: torch.Tensor, mixture: GaussianMixture) -> dict[str, torch.Tensor]:
    """Per mode (M,): relative mass error, median d2 of the samples it owns (highest
    responsibility), the share of them beyond d2 = 3, and the mass it takes from beyond d2 = 2."""
    x = samples.to(mixture.means.dtype)
    responsibility = mixture.responsibilities(x)  # (N, M)
    weights = mixture.marginal_weights.to(responsibility.dtype)
    scaled_d2 = torch.cdist(x, mixture.means) ** 2 / (mixture.stds**2 * mixture.dim)  # (N, M)
    owner = responsibility.argmax(dim=1)
    owned = [scaled_d2[owner == m, m] for m in range(weights.numel())]
    nan = torch.tensor(float("nan"), dtype=x.dtype)
    mass = responsibility.mean(0)
    return {
        "mass_error": mass / weights - 1,
        "median_d2": torch.stack([d.median() if d.numel() else nan for d in owned]),
        "beyond_3": torch.stack([(d > 3).to(x.dtype).mean() if d.numel() else nan for d in owned]),
        "far_mass": (responsibility * (scaled_d2 > 2)).mean(0),
        "mass": mass,
    }


def tail_report(name: str, samples: torch.Tensor, mixture: GaussianMixture) -> str:
    tails = mode_tails(samples, mixture)
    errors = " ".join(f"{e:+.3f}" for e in tails["mass_error"])
    lines = [f"{name}: mass error per mode {errors}"]
    for m, (weight, std) in enumerate(zip(mixture.marginal_weights, mixture.stds, strict=True)):
        lines.append(
            f"  mode {m} (weight {weight:.3f}, std {std:.3f}): median d2 {tails['median_d2'][m]:.2f}, "
            f"beyond 3 {tails['beyond_3'][m]:.3f}, mass from beyond 2 {tails['far_mass'][m]:.4f} "
            f"of {tails['mass'][m]:.4f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", required=True)
    parser.add_argument(
        "generators",
        nargs="*",
        metavar="FILE:STEPS[:SHIFT]",
        help="torch.save'd generators (SHIFT: sid.rollout_time_shift)",
    )
    parser.add_argument("--samples", type=int, default=64000)
    args = parser.parse_args()

    mixture = build_adapter(toy_config(4, teacher=args.teacher)).mixture
    null = torch.full((args.samples,), mixture.num_classes)
    cond = label_conditioning(null, mixture.num_classes)
    print(tail_report("exact", mixture.sample(null, torch.Generator().manual_seed(SAMPLE_SEED)), mixture))
    for spec in args.generators:
        path, steps, shift, generator = load_saved_student(spec)
        samples = generator_samples(generator, steps, cond, mixture.dim, SAMPLE_SEED, shift)
        print(tail_report(f"{Path(path).name} ({steps}-step)", samples, mixture))


if __name__ == "__main__":
    main()
