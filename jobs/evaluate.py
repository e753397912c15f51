"""Evaluate a saved generator: FID, alignment (CLIP score, or the digits' prompted-digit
probability) and a sample grid, logged as an MLflow evaluation run tagged with its training run.

    python jobs/evaluate.py runs/demo-digits/export/pipeline        # an exported diffusers folder
    python jobs/evaluate.py runs/demo-digits/checkpoint_00000050     # a checkpoint's generator
    python jobs/evaluate.py runs/demo-digits --set eval.num_samples=2000
    python jobs/evaluate.py --reference-stats stats/coco.safetensors --images /data/coco-val \\
        --inception-weights weights/pt_inception-2015-12-05-6726825d.pth   # FID reference, once

It samples the same prompt/seed set, in the same chunks, with the same metric code as the
in-training evaluation (`sid_ray.eval.generator_eval`), so the metrics carry the same names
(eval_fid, eval_<alignment>) and, on the same weights, the same values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sid_ray.config.schema import ConfigError  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "target", nargs="?", help="pipeline folder, checkpoint, generator.safetensors or run folder"
    )
    p.add_argument("--config", default=None, help="the run's config (default: the run folder's config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    p.add_argument(
        "--out", default=None, help="folder of the grid and metrics.json (default: <run>/eval-job)"
    )
    p.add_argument("--training-run-id", default=None, help="MLflow run to link (default: the checkpoint's)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow evaluation run")
    p.add_argument("--reference-stats", default=None, metavar="FILE", help="write FID reference statistics")
    p.add_argument(
        "--images", default=None, help="with --reference-stats: image folder or .tar shards (glob)"
    )
    p.add_argument("--inception-weights", default=None, help="with --reference-stats: FID's InceptionV3 file")
    return p.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict:
    from sid_ray.eval.generator_eval import eval_prompt_set, evaluate_generator
    from sid_ray.eval.grids import save_sample_grid
    from sid_ray.eval.saved_generator import (
        find_saved_generator,
        load_saved_generator,
        run_config_of,
        sampling_dtype,
    )
    from sid_ray.eval.scorers import scorer_for

    saved = find_saved_generator(args.target)
    config = run_config_of(saved, args.config, args.overrides)
    adapter, generator = load_saved_generator(saved, config)
    held_out = _held_out_prompts(config)
    scorer = scorer_for(config, adapter.device)
    prompts = eval_prompt_set(config, held_out)
    result = evaluate_generator(
        adapter,
        generator,
        prompts,
        scorer,
        config,
        sampling_dtype(config),
        grid_samples=config.eval.grid_samples,
    )
    out = Path(args.out) if args.out else (saved.run_dir or saved.path.parent) / "eval-job"
    grid = save_sample_grid({saved.kind: result.grid}, out / "samples_grid.png", title=str(saved.path))
    report = {"target": str(saved.path), "kind": saved.kind, **result.metrics, "eval_seconds": result.seconds}
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    for key, value in result.metrics.items():
        print(f"{key:40s} {value:.6f}")
    print(f"sample grid: {grid}")
    if not args.no_mlflow and config.tracking.mlflow_uri:
        run_id = _log_run(config, saved, report, out, args.training_run_id)
        print(f"MLflow evaluation run {run_id} in {config.tracking.mlflow_uri}")
        report["mlflow_run_id"] = run_id
    return report


def _held_out_prompts(config) -> list[str]:
    """The prompts the run held out by hash (what its in-training evaluation sampled)."""
    if config.data.images or config.data.eval_prompt_fraction <= 0:
        return []
    from sid_ray.data.prompt_sources import split_prompts
    from sid_ray.data.prompts import read_prompts
    from sid_ray.models.registry import default_prompts

    return split_prompts(
        read_prompts(config.data, default_prompts(config.model)), config.data.eval_prompt_fraction
    )[1]


def _log_run(config, saved, report: dict, out: Path, training_run_id: str | None) -> str:
    """An MLflow run of this evaluation, tagged with the training run it evaluates."""
    import mlflow

    from sid_ray.train.tracking import check_tracking_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(config.tracking.mlflow_uri)
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(config.tracking.experiment)
    linked = training_run_id if training_run_id is not None else saved.training_run_id
    tags = {"sid_ray.kind": "evaluation", "training_run_id": linked, "evaluated": str(saved.path)}
    with mlflow.start_run(
        experiment_id=experiment.experiment_id, run_name=f"{config.name}-eval", tags=tags
    ) as run:
        ev = config.eval
        mlflow.log_params({"target": str(saved.path), "kind": saved.kind, "eval.num_samples": ev.num_samples})
        mlflow.log_params({"eval.seed": ev.seed, "eval.batch_size": ev.batch_size})
        mlflow.log_metrics({k: v for k, v in report.items() if k.startswith("eval_")})
        mlflow.log_artifacts(str(out), artifact_path="eval")
        return run.info.run_id


def image_files(source: str) -> list[Path]:
    """Image files of a folder (recursively), or .tar shards of a folder or glob."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + (".tar",))
    else:
        files = sorted(Path(p) for p in __import__("glob").glob(str(path)))
    if not files:
        raise ConfigError(f"--images: {source} names no image files or .tar shards")
    return files


def iter_images(files: list[Path], size: int = 299):
    """Images (3, size, size) in [0, 1]: plain files, and the image members of .tar shards."""
    import io
    import tarfile

    import numpy as np
    import torch
    from PIL import Image

    def tensor(data) -> torch.Tensor:
        image = Image.open(data).convert("RGB").resize((size, size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255

    for file in files:
        if file.suffix != ".tar":
            yield tensor(file)
            continue
        with tarfile.open(file) as tar:
            for member in tar:
                if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    yield tensor(io.BytesIO(tar.extractfile(member).read()))


def reference_stats(args: argparse.Namespace) -> Path:
    """FID's reference statistics of a real image set, written to --reference-stats."""
    import torch

    from sid_ray.eval.fid import InceptionFeatures
    from sid_ray.eval.reference_stats import ReferenceStats

    if not (args.images and args.inception_weights):
        raise ConfigError("--reference-stats needs --images and --inception-weights")
    inception = InceptionFeatures(args.inception_weights).eval()
    features, batch = [], []
    for image in iter_images(image_files(args.images)):
        batch.append(image)
        if len(batch) == 64:
            features.append(inception(torch.stack(batch)).double())
            batch = []
    if batch:
        features.append(inception(torch.stack(batch)).double())
    stats = ReferenceStats.of_features(torch.cat(features), f"inception:{Path(args.inception_weights).name}")
    path = stats.save(args.reference_stats)
    print(f"reference statistics of {stats.num} images: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.reference_stats:
            reference_stats(args)
        elif args.target:
            evaluate(args)
        else:
            raise ConfigError("name a saved generator to evaluate, or --reference-stats")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
