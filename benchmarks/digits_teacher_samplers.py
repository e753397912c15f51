"""How far is the digits teacher from its own ODE and SDE limits? FID and alignment against steps.

    python benchmarks/digits_teacher_samplers.py                      # CPU, the demo's 2,000 samples
    python benchmarks/digits_teacher_samplers.py --device cuda --steps 4 32 128 256
    python benchmarks/digits_teacher_samplers.py --device cuda --steps 32 --ancestral 32 256 \
        --set model.path=/path/to/another/teacher

Rows, on the demo's fixed prompt/seed set: the teacher's deterministic Euler on t = 1 - i/N for
each N (the demo table's teacher rows are N = 32 and 4), the teacher's ancestral (DDPM-posterior,
stochastic) sampler on the same times for each `--ancestral` N — as N grows it tends to the
teacher's reverse-SDE distribution, which is the distribution its scores define and SiD matches,
where Euler tends to its probability-flow ODE's — and the K-step generator before any training
(the teacher copy run through the SiD roll-out: where distillation starts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sid_ray.config import load_config  # noqa: E402
from sid_ray.eval.digits_metrics import DigitsQuality  # noqa: E402
from sid_ray.eval.evaluate import (  # noqa: E402
    ancestral_sampler,
    euler_sampler,
    evaluate_sampler,
    generator_sampler,
)
from sid_ray.eval.prompts import digits_prompt_set  # noqa: E402
from sid_ray.models.registry import build_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo_digits.yaml"))
    parser.add_argument("--samples", type=int, default=None, help="default: the config's eval.num_samples")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--ancestral", type=int, nargs="*", default=[], help="ancestral sampler steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    adapter = build_adapter(config).to(args.device)
    metrics = DigitsQuality()
    prompts = digits_prompt_set(args.samples or config.eval.num_samples, config.eval.seed)
    guidance = config.sid.teacher_guidance
    rows = []
    K = config.sid.num_steps
    samplers = [("Euler ODE", steps, euler_sampler(adapter.teacher, steps, guidance)) for steps in args.steps]
    samplers += [
        ("ancestral", steps, ancestral_sampler(adapter.teacher, steps, guidance, config.eval.seed))
        for steps in args.ancestral
    ]
    initial = generator_sampler(adapter.teacher, K, guidance=guidance, seed=config.eval.seed)
    samplers.append(("initial G", K, initial))
    for name, steps, sampler in samplers:
        row, _ = evaluate_sampler(name, adapter, sampler, steps, prompts, metrics)
        rows.append(row)
        print(f"{name:<10} {steps:4d} steps: FID {row.fid:8.3f}  alignment {row.alignment:6.2f}", flush=True)
    print(
        f"\nteacher {config.model.name}, {len(prompts)} samples, seed {config.eval.seed}, guidance {guidance}"
    )
    print(f"{'sampler':<10} {'steps':>5} {'FID':>8} {'align %':>8}")
    for r in rows:
        print(f"{r.name:<10} {r.steps:>5} {r.fid:8.3f} {r.alignment:8.2f}")


if __name__ == "__main__":
    main()
