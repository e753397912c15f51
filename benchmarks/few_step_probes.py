"""Probes of few-step SiD on the exact Gaussian-mixture teachers (issue 17): one student per call.

Each probe swaps one piece of the shipped method (`sid_ray.sid.step`, `sid_ray.sid.rollout`)
for a variant, trains one student with the toy recipe (benchmarks/toy_gmm.py: configs/gmm_ring.yaml
on one process, its length, seed 0) and prints one RESULT line: the K-step output's energy distance
and worst mode-mass error, the distance after every k = 1..K roll-out steps, and, per mode, the
spread of the K-step output against the true standard deviation (a last step that contracts the
modes shows there). Research code: the variants are patched in here, not config options, because
none of them cleared issue 17's bars (benchmarks/results/2026-12-03-few-step-probes.md). Those
that helped became config options: `sid.earlier_steps_gradient` (`--set sid.earlier_steps_gradient=A`)
and `sid.rollout_time_shift` (`--times-shift S` is `--set sid.rollout_time_shift=S`).

    python benchmarks/few_step_probes.py --teacher gmm-d3                       # the recipe
    python benchmarks/few_step_probes.py --teacher gmm-d3 --steps 1             # the 1-step student
    python benchmarks/few_step_probes.py --teacher gmm-d3 --law k-closes-rounds # rounds end with k = K
    python benchmarks/few_step_probes.py --teacher gmm-d3 --law k-weight:3      # k = K 3 times a round
    python benchmarks/few_step_probes.py --teacher gmm-d3 --law k-last-tail:0.25
    python benchmarks/few_step_probes.py --teacher gmm-d3 --times-shift 3       # t -> 3t / (1 + 2t)
    python benchmarks/few_step_probes.py --teacher gmm-d3 --times-shift 1       # SID.md's 1 - i/K
    python benchmarks/few_step_probes.py --teacher gmm-d3 --last-step-gradient-power 1  # x 1/t_last
    python benchmarks/few_step_probes.py --teacher gmm-d3 --loss-time below-last-step
    python benchmarks/few_step_probes.py --teacher gmm-d3 --set sid.k_law=last  # any config override
    python benchmarks/few_step_probes.py --teacher gmm-d3 --width 512           # wider F and G
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import sys
import time
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sid_ray.sid.step as step_module  # noqa: E402
from benchmarks.toy_gmm import (  # noqa: E402
    SAMPLE_SEED,
    UNCONDITIONAL,
    per_step_distances,
    references,
    toy_config,
)
from sid_ray.eval.toy_metrics import (  # noqa: E402
    energy_distance,
    generator_samples,
    per_step_samples,
    worst_relative_mass_error,
)
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.sid.flow import gaussian_noise, interpolate  # noqa: E402
from sid_ray.toys.gaussian_mixture_adapter import GaussianMixtureAdapter  # noqa: E402

# `sid_ray.sid` re-exports the function `rollout`, which hides the module of that name
rollout_module = sys.modules["sid_ray.sid.rollout"]
current_k = [1]  # this iteration's k, for the loss-time probe
ADAPTER_WIDTH = inspect.signature(GaussianMixtureAdapter.__init__).parameters["width"].default


def _order(key: str, ks: list[int]) -> list[int]:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return [ks[i] for i in torch.randperm(len(ks), generator=g).tolist()]


def law_of_k(spec: str, total: int, block_size: int):
    """draw_num_steps' replacement for `spec` (see --law)."""
    shipped = step_module.draw_num_steps

    def draw(max_steps, seed, iteration, block=1, law="uniform"):
        K = max_steps
        if spec.startswith("k-last-tail:") and iteration >= total * (1 - float(spec.split(":")[1])):
            k = K
        elif spec == "k-closes-rounds" or spec.startswith("k-weight:"):
            # rounds counted back from the run's last iteration: k = 1..K-1 once in a seeded
            # order, then k = K `repeat` times, so every round (the run's last one too) ends on K
            repeat = int(spec.split(":")[1]) if ":" in spec else 1
            size = K - 1 + repeat
            back = (total - 1 - iteration) // block_size
            k = (_order(f"{seed}/r{back // size}", list(range(1, K))) + [K] * repeat)[size - 1 - back % size]
        else:
            k = shipped(max_steps, seed, iteration, block=block, law=law)
        current_k[0] = k
        return k

    return draw


def last_step_gradient_scaled(power: float, time_shift: float):
    """The shipped roll-out with the G update's gradient scaled by t_last^-power at the last
    step's output (the forward value unchanged)."""
    shipped = step_module.rollout

    def rollout(velocity, z, num_steps, max_steps, *args, grad_last_step=False, **kwargs):
        x0_hat = shipped(velocity, z, num_steps, max_steps, *args, grad_last_step=grad_last_step, **kwargs)
        if not grad_last_step:
            return x0_hat
        scale = rollout_module.rollout_times(max_steps, time_shift)[num_steps - 1] ** -power
        return x0_hat.detach() + (x0_hat - x0_hat.detach()) * scale

    return rollout


def noised_below_last_step(x_g, batch, settings, g):
    """_noised with the loss time drawn in (0, t_last]: t_last is the k-step output's last
    roll-out time, the scale that step refines."""
    eps = gaussian_noise(x_g.shape, g, x_g.device, x_g.dtype)
    t = settings.time_law.sample(batch, generator=g, device=x_g.device).to(x_g.dtype)
    t = t * (1.0 - (current_k[0] - 1) / settings.num_steps)
    return eps, t, interpolate(x_g, eps, t)


def mode_spreads(x: torch.Tensor, mixture) -> list[float]:
    """Per mode, the root mean squared deviation per dimension of the samples it most likely drew."""
    means, stds = mixture.means.double(), mixture.stds.double()
    log_density = -0.5 * torch.cdist(x.double(), means) ** 2 / stds**2 - x.shape[1] * stds.log()
    owner = log_density.argmax(1)
    spreads = []
    for j in range(len(stds)):
        own = x[owner == j].double()
        spreads.append(((own - own.mean(0)) ** 2).mean().sqrt().item() if len(own) > 1 else float("nan"))
    return spreads


def main() -> None:
    from sid_ray.train.local import run_local

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default="gmm-ring")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--law", default="shipped", help="shipped | k-closes-rounds | k-weight:N | k-last-tail:F"
    )
    parser.add_argument(
        "--times-shift",
        type=float,
        default=None,
        help="sid.rollout_time_shift: roll-out times s t / (1 + (s - 1) t)",
    )
    parser.add_argument(
        "--last-step-gradient-power", type=float, default=0.0, help="scale G's gradient by t_last^-P"
    )
    parser.add_argument("--loss-time", default="full", choices=["full", "below-last-step"])
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--save", default=None, help="torch.save the trained generator here")
    parser.add_argument(
        "--width", type=int, default=ADAPTER_WIDTH, help="the F and G MLPs' width (capacity probe)"
    )
    args = parser.parse_args()

    if args.width != ADAPTER_WIDTH:  # the teacher fit's cache key includes the width
        init = GaussianMixtureAdapter.__init__
        GaussianMixtureAdapter.__init__ = functools.partialmethod(init, width=args.width)

    if args.times_shift is not None:
        args.set.append(f"sid.rollout_time_shift={args.times_shift}")
    config = toy_config(args.steps, teacher=args.teacher, extra=args.set)
    shift = config.sid.rollout_time_shift
    total = math.ceil(config.train.total_kimg * 1000 / config.train.batch_size)
    step_module.draw_num_steps = law_of_k(args.law, total, config.sid.k_block)
    if args.last_step_gradient_power:
        step_module.rollout = last_step_gradient_scaled(args.last_step_gradient_power, shift)
    if args.loss_time == "below-last-step":
        step_module._noised = noised_below_last_step

    adapter = build_adapter(config)
    mixture = adapter.mixture
    cond, truth, _ = references(adapter, 4000)
    start = time.time()
    generator = run_local(config, prompts=UNCONDITIONAL, log=None, write_config=False).generator
    seconds = time.time() - start
    if args.save:
        torch.save(generator, args.save)
    x = generator_samples(generator, args.steps, cond, mixture.dim, SAMPLE_SEED, shift)
    mass_error = worst_relative_mass_error(x, mixture, mixture.marginal_weights)
    per_k = ""
    if args.steps > 1:
        distances, mixed = per_step_distances(generator, args.steps, cond, truth, shift)
        per_k = f"after k steps {' '.join(f'{d:.4f}' for d in distances)} (mixture {mixed:.4f}) | "
    spreads = " ".join(
        f"{a:.3f}/{b:.3f}" for a, b in zip(mode_spreads(x, mixture), mixture.stds.tolist(), strict=True)
    )
    if args.steps > 1:  # where the modes widen or narrow along the roll-out
        outputs = per_step_samples(generator, args.steps, cond, mixture.dim, SAMPLE_SEED, shift)
        per_k_spreads = "; ".join(" ".join(f"{a:.3f}" for a in mode_spreads(o, mixture)) for o in outputs)
        spreads += f" | spread after k steps {per_k_spreads}"
    print(
        f"RESULT {args.teacher} steps {args.steps} law {args.law} shift {shift:g} last-step gradient power {args.last_step_gradient_power:g} "
        f"loss-time {args.loss_time} width {args.width} {' '.join(args.set)} | ED {energy_distance(x, truth):.4f} | "
        f"mass err {mass_error:.3f} | {per_k}spread/true std {spreads} | {seconds:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
