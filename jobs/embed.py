"""Encode a run's prompts once into `data.embedding_cache` (training then loads no text encoder).

    python jobs/embed.py --config configs/flux_dev.yaml --set data.prompts=s3://bucket/prompts/ \\
        --set data.embedding_cache=/shared/emb/flux-dev --set data.embed_workers=8 --set train.use_gpu=true
    ray job submit --working-dir . -- python jobs/embed.py --config ...

Ray Data reads and cleans the prompts, an actor pool of `data.embed_workers` text encoders writes
parquet shards, each prompt once, and the manifest; run it again to resume (shards on disk are
skipped). With eval.every_kimg > 0 a cached run's workers (no text encoder) read the in-training
evaluation prompts from the cache: the held-out rows of the shards, and an evaluation file of
those that are not held out (the teacher's fixed set of a run without held-out prompts).
Prints the read counts (dropped lines by kind), the truncations, prompts/s and the cache folder.
gs:// caches and prompt files on a GCS emulator: set STORAGE_EMULATOR_HOST (sid_ray.data.storage).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobs.distill import parser  # noqa: E402
from sid_ray.config.io import load_config  # noqa: E402
from sid_ray.config.schema import ConfigError  # noqa: E402
from sid_ray.train.console import setup as setup_console  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], None).parse_args(argv)
    console = setup_console(args.verbose)  # before ray and transformers are imported
    try:
        config = load_config(args.config, args.overrides)
        import ray

        from sid_ray.data.embedding_build import build_embedding_cache
        from sid_ray.eval.generator_eval import eval_prompt_list
        from sid_ray.train.console import init_ray

        if not ray.is_initialized():
            init_ray(console, {})
        manifest = build_embedding_cache(config, eval_prompts=eval_prompt_list)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    evaluation = _evaluation_summary(manifest.get("eval_set"))
    print(
        f"embedding cache: {config.data.embedding_cache}: {manifest['train_count']} training and "
        f"{manifest['eval_count']} held-out prompts, {evaluation} (in-training evaluation, "
        f"eval.every_kimg > 0), read counts {manifest['read_counts']}, over the tokenizers' limit "
        f"{manifest['truncated']}"
    )
    if config.tracking.mlflow_uri:
        print(log_to_mlflow(config, manifest))
    return 0


def _evaluation_summary(eval_set: dict | None) -> str:
    """Where the manifest says the run's evaluation prompts are."""
    if not eval_set:
        return "no evaluation set"
    where = f"{eval_set['from_shards']} held-out rows of the shards"
    if eval_set["file"]:
        where += f", {eval_set['file_rows']} in {eval_set['file']}"
    return f"{eval_set['prompts']} evaluation prompts ({where})"


def log_to_mlflow(config, manifest: dict) -> str:
    """The job's counts and manifest as an MLflow run of `tracking.experiment`; the line saying where."""
    from sid_ray.data.data_tracking import log_embedding_job
    from sid_ray.data.storage import StoragePath
    from sid_ray.train.tracking import absolute_tracking_uri

    uri = absolute_tracking_uri(config.tracking.mlflow_uri)
    folder = str(StoragePath(config.data.embedding_cache))
    run_id = log_embedding_job(uri, config.tracking.experiment, f"{config.name}-embed", manifest, folder)
    return f"MLflow run {run_id} in {uri} (experiment {config.tracking.experiment})"


if __name__ == "__main__":
    sys.exit(main())
