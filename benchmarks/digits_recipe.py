"""Recipe sweep on the digits teacher: one single-process SiD run per variant, scored like the demo.

    python benchmarks/digits_recipe.py --variant base                       # the demo's recipe
    python benchmarks/digits_recipe.py --device cuda --samples 2000 \\
        --variant base --variant fastF optim.fake_lr=3e-4 --variant long train.total_kimg=25.6

Each variant is a name and config overrides on top of `configs/demo_digits.yaml`. The run is
`run_local` (the same `distill_step` as the Ray workers; the demo's 2 workers x micro-batch are
emulated by accumulation, same noise keys), so the numbers carry over to the demo up to the
device's floating point. Rows: the teacher with 32 and 4 Euler steps (once per teacher guidance),
then per variant the student with 1 and K steps, FID and prompted-digit probability on the
demo's fixed prompt/seed set, plus the K-step student every `--eval-every-kimg` (the curve).
The last lines are a table; `--json` writes every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sid_ray.config import load_config  # noqa: E402
from sid_ray.eval.digits_metrics import DigitsQuality  # noqa: E402
from sid_ray.eval.evaluate import euler_sampler, evaluate_sampler, generator_sampler  # noqa: E402
from sid_ray.eval.prompts import digits_prompt_set  # noqa: E402
from sid_ray.models.registry import build_adapter  # noqa: E402
from sid_ray.train.local import run_local  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo_digits.yaml"


def score(adapter, sampler, steps, prompts, metrics) -> tuple[float, float]:
    """(FID, alignment) of one sampler on the fixed prompt/seed set."""
    row, _ = evaluate_sampler("", adapter, sampler, steps, prompts, metrics)
    return row.fid, row.alignment


def digits_pairs(config, device):
    """Data-aided variants: all 1,797 digits and their prompts, encoded by the teacher's VAE, in
    the order law of the product's pair stream (`sid_ray.data.pair_stream.PairCycle`)."""
    from sid_ray.data.pair_stream import PairCycle, PairTable
    from sid_ray.toys.digits_data import digit_prompt, load_digit_images

    adapter = build_adapter(config).to(device)
    images, labels = load_digit_images()
    with torch.no_grad():
        latents = adapter.encode_images(images.to(device)).float().cpu().numpy()
    table = PairTable(None, latents, [digit_prompt(int(d)) for d in labels], 0)
    return PairCycle(table, seed=config.data.shuffle_seed)


def run_variant(name: str, overrides: list[str], args, metrics, teacher_rows: dict) -> dict:
    """Distill one variant; its teacher rows (cached per guidance), final rows and curve."""
    config = load_config(
        args.config,
        [f"name=recipe-{name}", "train.log_every=5", "output_dir=/tmp/sid_ray_recipe", *overrides],
    )
    n = args.samples or config.eval.num_samples
    prompts = digits_prompt_set(n, config.eval.seed)
    K, seed = config.sid.num_steps, config.eval.seed
    guidance = config.sid.teacher_guidance
    if args.no_teacher:
        teacher_rows.setdefault(guidance, {32: (float("nan"),) * 2, 4: (float("nan"),) * 2})
    if guidance not in teacher_rows:
        adapter = build_adapter(config).to(args.device)
        teacher_rows[guidance] = {
            steps: score(adapter, euler_sampler(adapter.teacher, steps, guidance), steps, prompts, metrics)
            for steps in (32, 4)
        }
        for steps, (fid, align) in teacher_rows[guidance].items():
            print(
                f"teacher guidance {guidance} Euler {steps:2d}: FID {fid:7.3f}  align {align:6.2f}",
                flush=True,
            )
    curve, next_eval = [], [args.eval_every_kimg]

    def on_log(row, result):
        if args.eval_every_kimg > 0 and row["kimg"] + 1e-9 >= next_eval[0]:
            next_eval[0] += args.eval_every_kimg
            gen = result.generator.eval()
            fid, align = score(result.adapter, generator_sampler(gen, K, K, seed=seed), K, prompts, metrics)
            gen.train()
            curve.append({"kimg": row["kimg"], "fid": fid, "alignment": align, **row})
            print(
                f"  {name} kimg {row['kimg']:6.2f}: FID {fid:7.3f}  align {align:6.2f}  "
                f"L_F {row['loss/fake']:.4g} L_G {row['loss/generator']:.4g}",
                flush=True,
            )

    begin = time.perf_counter()
    # the demo's prompt file is plain text (the launcher reads it with Ray Data, same list)
    train_prompts = list(dict.fromkeys(p.strip() for p in open(ROOT / config.data.prompts) if p.strip()))
    pairs = digits_pairs(config, args.device) if config.sid.data_aided.enabled else None
    result = run_local(
        config, train_prompts, log=None, write_config=False, on_log=on_log, device=args.device, pairs=pairs
    )
    train_s = time.perf_counter() - begin
    gen = result.generator.eval()
    final = {
        steps: score(result.adapter, generator_sampler(gen, steps, K, seed=seed), steps, prompts, metrics)
        for steps in (1, K)
    }
    t32, t4 = teacher_rows[guidance][32], teacher_rows[guidance][4]
    bar = min(1.1 * t32[0], 0.5 * t4[0])
    print(
        f"{name}: student {K}-step FID {final[K][0]:.3f} align {final[K][1]:.2f} | 1-step "
        f"{final[1][0]:.3f} {final[1][1]:.2f} | bar {bar:.3f} | {train_s:.0f}s train",
        flush=True,
    )
    return {
        "name": name,
        "overrides": overrides,
        "samples": n,
        "train_seconds": train_s,
        "teacher32": t32,
        "teacher4": t4,
        "student1": final[1],
        f"student{K}": final[K],
        "fid_bar": bar,
        "meets_bar": final[K][0] <= bar and abs(final[K][1] - t32[1]) <= 2,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME [KEY=VALUE ...]",
        help="a variant: its name, then config overrides (repeat the flag for more variants)",
    )
    parser.add_argument("--config", default=str(DEMO))
    parser.add_argument("--samples", type=int, default=None, help="eval samples (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-every-kimg", type=float, default=0.0, help="curve points; 0 = end only")
    parser.add_argument("--no-teacher", action="store_true", help="skip the teacher rows (parallel sweeps)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default="", help="write all numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # tiny models: one thread per process, processes in parallel
    metrics = DigitsQuality()
    teacher_rows: dict[float, dict] = {}
    results = [run_variant(name, overrides, args, metrics, teacher_rows) for name, *overrides in args.variant]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(
        f"\n{'variant':<16} {'FID4':>7} {'align4':>7} {'FID1':>7} {'align1':>7} {'bar':>7} {'T32':>7} {'T4':>7} "
        f"{'ok':>3} {'train s':>8}  overrides"
    )
    for r in results:
        k = [key for key in r if key.startswith("student") and key != "student1"][0]
        print(
            f"{r['name']:<16} {r[k][0]:7.3f} {r[k][1]:7.2f} {r['student1'][0]:7.3f} {r['student1'][1]:7.2f} "
            f"{r['fid_bar']:7.3f} {r['teacher32'][0]:7.3f} {r['teacher4'][0]:7.3f} {'yes' if r['meets_bar'] else 'no':>3} "
            f"{r['train_seconds']:8.0f}  {' '.join(r['overrides'])}"
        )


if __name__ == "__main__":
    main()
