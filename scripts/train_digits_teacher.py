"""Train the digits teacher (tiny FLUX on sklearn's digits) and save it as a FluxPipeline folder.

    python scripts/train_digits_teacher.py                      # into sid_ray/assets/digits-flux
    python scripts/train_digits_teacher.py --folder /tmp/digits --steps 500

Deterministic for a given recipe (seed 0 by default). Prints the teacher's quality table
(32- and 4-step Euler) unless --no-eval.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sid_ray.models.digits import SHIPPED_FOLDER  # noqa: E402
from sid_ray.models.digits_teacher import DigitsTeacherRecipe, build_digits_teacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=SHIPPED_FOLDER, help="output folder (replaced)")
    parser.add_argument(
        "--steps", type=int, default=None, help="flow-matching steps (recipe default if unset)"
    )
    parser.add_argument("--seed", type=int, default=None, help="training seed (recipe default if unset)")
    parser.add_argument("--no-eval", action="store_true", help="skip the quality table")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    recipe = dataclasses.replace(DigitsTeacherRecipe(), **overrides)
    if args.folder.exists():
        shutil.rmtree(args.folder)
    build_digits_teacher(args.folder, recipe)
    if not args.no_eval:
        from scripts.eval_digits_teacher import evaluate_teacher_folder

        evaluate_teacher_folder(args.folder)


if __name__ == "__main__":
    main()
