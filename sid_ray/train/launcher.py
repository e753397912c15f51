"""Build and run the TorchTrainer of a distributed SiD run from our config.

Checkpoints are stored under `<train.storage_path or output_dir>/<name>` (`run_storage`: a folder
or s3:// gs://); Ray Train V2 keeps its checkpoint index there, so starting a run with the same
name again resumes from its latest checkpoint, and a worker failure restarts the worker group from
it (`train.max_failures` times).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import ray
import ray.data
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from sid_ray.config.io import config_to_dict, dump_config
from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data.data_tracking import summary_line
from sid_ray.data.embedding_build import ensure_embedding_cache
from sid_ray.data.embedding_stream import RankEmbeddingStream
from sid_ray.data.image_pairs import encode_pairs
from sid_ray.data.pair_stream import RankPairStream
from sid_ray.data.prompt_sources import split_prompts
from sid_ray.data.prompts import PROMPT_STREAM, RankPromptStream, read_prompts_counted, rows_per_rank
from sid_ray.data.stream_start import stream_start_actor
from sid_ray.eval.generator_eval import eval_prompt_list
from sid_ray.models.registry import default_prompts
from sid_ray.train.cached_prompts import held_out_prompts, uses_embedding_cache, with_absolute_cache
from sid_ray.train.console import Console, init_ray
from sid_ray.train.data_resources import check_data_stage
from sid_ray.train.ds_config import check_batch
from sid_ray.train.in_training_eval import divergence
from sid_ray.train.memory_plan import check_fits
from sid_ray.train.progress import ProgressPrinter
from sid_ray.train.run_storage import checkpoint_location, copy_export, ray_storage
from sid_ray.train.tracking import check_tracking_uri, resolve_tracking_uri
from sid_ray.train.worker import train_loop_per_worker


@dataclass
class LaunchResult:
    run_dir: Path
    export_dir: Path | None
    metrics: dict
    checkpoint_path: str | None
    rows: list[dict] = field(default_factory=list)
    summary: str = ""


def check_teacher(config: RunConfig) -> None:
    """Fail on the driver, before any worker starts, when the teacher folder is missing."""
    if not config.model.path:
        return
    from sid_ray.models.loading import _is_hub_id, resolve_folder

    if _is_hub_id(config.model.path):
        return  # downloaded by the workers; a local path is checked here
    try:
        folder = resolve_folder(config.model.path)
    except ConfigError as err:
        raise ConfigError(f"model.path: {err}") from None
    if not (folder / "model_index.json").is_file():
        raise ConfigError(
            f"model.path: teacher folder {folder} has no model_index.json "
            "(expected a diffusers pipeline folder)"
        )


def scaling_config(config: RunConfig) -> ray.train.ScalingConfig:
    train = config.train
    resources = {"CPU": train.cpus_per_worker}
    if train.use_gpu:
        resources["GPU"] = train.gpus_per_worker
    return ray.train.ScalingConfig(
        num_workers=train.num_workers,
        use_gpu=train.use_gpu,
        resources_per_worker=resources,
        placement_strategy=train.placement_strategy,
    )


@dataclass
class DataStage:
    """What feeds the workers (a per-rank stream) and what reading it counted, for MLflow."""

    stream: RankPromptStream
    counts: dict[str, dict] = field(default_factory=dict)  # {group: {kind: count}}
    artifacts: dict[str, dict] = field(default_factory=dict)  # {file name: JSON-able dict}
    eval_prompts: list[str] = field(default_factory=list)  # held out by hash (text prompt runs only)


def data_stage(config: RunConfig) -> DataStage:
    """The run's stream: (caption, latent) pairs, cached embeddings or prompt texts."""
    seed, batch = config.data.shuffle_seed, config.train.batch_size
    if config.data.images:  # data-aided runs train on the captions of data.images
        # (caption, latent) pairs of the cached table, in the prompt stream's order; encoded once
        # here, before any worker starts (the table folder must be readable from every node)
        table = encode_pairs(config)
        counts = {"pairs": {"rows": len(table), "skipped": table.num_skipped}}
        counts["pairs_skipped"] = table.meta.get("skipped", {})
        return DataStage(RankPairStream(table.folder, seed, batch), counts)
    if uses_embedding_cache(config):
        # encoded once, here, when the cache is missing or stale; the workers load no text encoder
        manifest = ensure_embedding_cache(config, eval_prompts=eval_prompt_list)
        counts = {"read": manifest["read_counts"], "truncated": manifest["truncated"]}
        counts["cache"] = {k: manifest[k] for k in ("count", "train_count", "eval_count")}
        artifacts = {"embedding_manifest.json": manifest}
        stream = RankEmbeddingStream(config.data.embedding_cache, seed, batch)
        # evaluation reads the held-out prompts' embeddings from the cache (in_training_eval)
        held_out = held_out_prompts(config.data.embedding_cache) if config.eval.every_kimg > 0 else []
        return DataStage(stream, counts, artifacts, held_out)
    prompts, read = read_prompts_counted(config.data, default_prompts(config.model))
    train, held_out = split_prompts(prompts, config.data.eval_prompt_fraction)  # never trained on
    counts = {"read": read, "prompts": {"train": len(train), "held_out": len(held_out)}}
    return DataStage(RankPromptStream(train, seed, batch), counts, eval_prompts=held_out)


def build_trainer(config: RunConfig, progress_queue=None, stage: DataStage | None = None) -> TorchTrainer:
    check_batch(config)
    config = with_absolute_cache(config)
    train = config.train
    stage = stage or data_stage(config)
    iterations = math.ceil(train.total_kimg * 1000 / train.batch_size)
    # Ray Data keeps each rank's rows in order (the worker checks every batch's positions)
    data_context = ray.data.DataContext.get_current()
    data_context.execution_options.preserve_order = True
    data_context.enable_progress_bars = False  # the progress line is ours
    # the workers tell it where they resume, so the stream begins there (sid_ray.data.stream_start)
    stage.stream.start = stream_start_actor(config.name)
    rows = ray.data.range(rows_per_rank(iterations, train.batch_size, train.num_workers))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config_to_dict(config),
            "progress_queue": progress_queue,
            "eval_prompts": stage.eval_prompts,
            "data_counts": stage.counts,  # rank 0 logs them into the MLflow run when it opens it
            "data_artifacts": stage.artifacts,
        },
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=scaling_config(config),
        run_config=ray.train.RunConfig(
            name=config.name,
            **ray_storage(config),  # a gs:// path on the GCS emulator comes with its file system
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=train.keep_checkpoints or None),
        ),
        datasets={PROMPT_STREAM: rows},
        dataset_config=stage.stream,
    )


def launch(config: RunConfig, show_progress: bool = True, console: Console | None = None) -> LaunchResult:
    """Run (or resume) `config` on the Ray cluster this process is connected to (or a local one).

    `ray.init()` honours RAY_ADDRESS, so the same call works under `ray job submit`. `console`
    (the jobs' `console.setup()`) decides what reaches the terminal; None keeps Ray's defaults.
    """
    check_teacher(config)
    check_fits(config)  # a GPU run that cannot fit train.gpu_memory_gib fails here, naming what to change
    tracking = dataclasses.replace(
        config.tracking, mlflow_uri=resolve_tracking_uri(config.tracking.mlflow_uri)
    )
    # absolute: the workers run in other folders and write the final export into the run folder
    output_dir = str(Path(config.output_dir).resolve())
    config = dataclasses.replace(config, tracking=tracking, output_dir=output_dir)
    check_tracking_uri(config.tracking.mlflow_uri)  # an MLflow server that does not answer fails here
    if not ray.is_initialized():
        init_ray(console, _worker_env())
    reserved = check_data_stage(config)  # a data stream that could never run fails here, not hangs
    if show_progress:
        print(reserved, flush=True)
    run_dir = Path(config.output_dir).resolve() / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    stage = data_stage(with_absolute_cache(config))  # prompts read, caches built: before the progress line
    if show_progress:
        print(summary_line(stage.counts), flush=True)
    in_place = console is not None and console.quiet  # one line rewritten in a terminal
    printer = ProgressPrinter(config.train.total_kimg, show_lines=show_progress, in_place=in_place)
    printer.start()
    try:
        result = build_trainer(config, printer.queue, stage).fit()
    except BaseException:
        printer.stop()
        printer.summary("failed")
        raise
    rows = printer.stop()
    export_dir = copy_export(result.checkpoint, run_dir)
    ckpt_path = checkpoint_location(result.checkpoint)
    # rank 0 sends each row before the workers test it; a diverged run's last row is the one
    # that stopped it (the workers' message said why)
    diverged = bool(rows) and divergence(rows[-1], config) is not None
    summary = printer.summary(
        "diverged (stopped early)" if diverged else "finished",
        {"checkpoint": ckpt_path, "export": str(export_dir) if export_dir else "none"},
    )
    return LaunchResult(run_dir, export_dir, dict(result.metrics or {}), ckpt_path, rows, summary)


def _worker_env() -> dict[str, str]:
    # the teacher-fit cache is shared by the driver and the workers of a local cluster
    env = {}
    for key in ("SID_RAY_CACHE",):
        if key in os.environ:
            env[key] = os.environ[key]
    return env
