"""Train the digits teacher (tiny FLUX on sklearn's digits) and save it as a FluxPipeline folder.

    python scripts/train_digits_teacher.py                      # into sid_ray/assets/digits-flux
    python scripts/train_digits_teacher.py --folder /tmp/digits --steps 500
    python scripts/train_digits_teacher.py --folder /tmp/wide --set num_attention_heads=8 --device cuda

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

from sid_ray.toys.digits import SHIPPED_FOLDER  # noqa: E402
from sid_ray.toys.digits_teacher import DigitsTeacherRecipe, build_digits_teacher  # noqa: E402


def recipe_overrides(pairs: list[str]) -> dict:
    """`FIELD=VALUE` strings -> recipe fields, each VALUE parsed as the field's default is typed."""
    defaults = {f.name: f.default for f in dataclasses.fields(DigitsTeacherRecipe)}
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in defaults:
            raise SystemExit(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {sorted(defaults)}")
        default = defaults[name]
        try:
            if isinstance(default, tuple):
                out[name] = tuple(type(default[0])(v) for v in value.split(","))
            else:
                out[name] = type(default)(value)
        except ValueError:
            raise SystemExit(f"--set {pair!r}: {name} takes a value like {default!r}") from None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=SHIPPED_FOLDER, help="output folder (replaced)")
    parser.add_argument(
        "--steps", type=int, default=None, help="flow-matching steps (recipe default if unset)"
    )
    parser.add_argument("--seed", type=int, default=None, help="training seed (recipe default if unset)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="any other recipe field"
    )
    parser.add_argument("--device", default="cpu", help="cuda trains faster, not bit-identically")
    parser.add_argument("--no-eval", action="store_true", help="skip the quality table")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    overrides.update(recipe_overrides(args.set))
    recipe = dataclasses.replace(DigitsTeacherRecipe(), **overrides)
    if args.folder.exists():
        shutil.rmtree(args.folder)
    build_digits_teacher(args.folder, recipe, device=args.device)
    if not args.no_eval:
        from scripts.eval_digits_teacher import evaluate_teacher_folder

        evaluate_teacher_folder(args.folder)


if __name__ == "__main__":
    main()
