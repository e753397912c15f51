"""Quality of a digits teacher folder: FID and prompted-digit probability for N-step Euler.

    python scripts/eval_digits_teacher.py [--folder F] [--samples 1000] [--seed 1234] \
        [--steps 32 4] [--guidance 1.0] [--grid runs/digits_teacher_grid.png]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sid_ray.config.schema import ModelConfig  # noqa: E402
from sid_ray.eval.digits_metrics import DigitsQuality  # noqa: E402
from sid_ray.eval.evaluate import euler_sampler, evaluate_sampler, format_table, write_comparison_grid  # noqa: E402
from sid_ray.eval.prompts import DEFAULT_SEED, digits_prompt_set  # noqa: E402
from sid_ray.toys.digits import SHIPPED_FOLDER, DigitsFluxAdapter  # noqa: E402
from sid_ray.toys.digits_data import DIGITS_RESOLUTION  # noqa: E402


def evaluate_teacher_folder(
    folder: Path,
    num_samples: int = 1000,
    seed: int = DEFAULT_SEED,
    steps: Sequence[int] = (32, 4),
    guidances: Sequence[float] = (1.0,),
    grid: Path | None = Path("runs/digits_teacher_grid.png"),
) -> None:
    adapter = DigitsFluxAdapter(
        ModelConfig(name="digits-flux", path=str(folder), resolution=DIGITS_RESOLUTION)
    )
    metrics = DigitsQuality()
    prompts = digits_prompt_set(num_samples, seed)
    rows, images = [], {}
    for guidance in guidances:
        for n in steps:
            name = f"teacher Euler cfg={guidance:g}"
            row, imgs = evaluate_sampler(
                name, adapter, euler_sampler(adapter.teacher, n, guidance), n, prompts, metrics
            )
            rows.append(row)
            images[f"{n} steps, cfg {guidance:g}"] = imgs
            print(format_table([row], metrics.alignment_name).splitlines()[-1], flush=True)
    print(f"\n{num_samples} samples, prompt/noise seeds {seed}..{seed + num_samples - 1}")
    print(format_table(rows, metrics.alignment_name))
    if grid is not None:
        print("grid:", write_comparison_grid(images, prompts, grid, title="digits teacher (Euler)"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=SHIPPED_FOLDER)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 4])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument("--grid", type=Path, default=Path("runs/digits_teacher_grid.png"))
    args = parser.parse_args()
    evaluate_teacher_folder(args.folder, args.samples, args.seed, args.steps, args.guidance, args.grid)


if __name__ == "__main__":
    main()
