"""Build and run the TorchTrainer of a distributed SiD run from our config.

Storage is `<output_dir>/<name>` (absolute); Ray Train V2 keeps its checkpoint index there, so
starting a run with the same name again resumes from its latest checkpoint, and a worker
failure restarts the worker group from it (`train.max_failures` times).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import ray
import ray.data
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from sid_ray.config.io import config_to_dict, dump_config
from sid_ray.config.paths import EXPORT_DIR
from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data.embedding_build import ensure_embedding_cache
from sid_ray.data.embedding_stream import RankEmbeddingStream
from sid_ray.data.image_pairs import encode_pairs
from sid_ray.data.pair_stream import RankPairStream
from sid_ray.data.prompts import PROMPT_STREAM, RankPromptStream, read_prompts, rows_per_rank
from sid_ray.models.registry import default_prompts
from sid_ray.train.cached_prompts import training_prompts, uses_embedding_cache, with_absolute_cache
from sid_ray.train.console import Console, init_ray
from sid_ray.train.data_resources import check_data_stage
from sid_ray.train.ds_config import check_batch
from sid_ray.train.memory_plan import check_fits
from sid_ray.train.progress import ProgressPrinter
from sid_ray.train.tracking import absolute_tracking_uri
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


def build_trainer(config: RunConfig, progress_queue=None) -> TorchTrainer:
    check_batch(config)
    config = with_absolute_cache(config)
    train = config.train
    run_dir = Path(config.output_dir).resolve()
    # data-aided runs train on the captions of data.images instead of a prompt list
    prompts = None if config.data.images else read_prompts(config.data, default_prompts(config.model))
    iterations = math.ceil(train.total_kimg * 1000 / train.batch_size)
    # Ray Data keeps each rank's rows in order (the worker checks every batch's positions)
    data_context = ray.data.DataContext.get_current()
    data_context.execution_options.preserve_order = True
    data_context.enable_progress_bars = False  # the progress line is ours
    if prompts is None:
        # (caption, latent) pairs of the cached table, in the prompt stream's order; encoded once
        # here, before any worker starts (the table folder must be readable from every node)
        table = encode_pairs(config)
        dataset_config = RankPairStream(table.folder, config.data.shuffle_seed, train.batch_size)
    elif uses_embedding_cache(config):
        # encoded once, here, when the cache is missing or stale; the workers load no text encoder
        ensure_embedding_cache(config)
        folder = config.data.embedding_cache
        dataset_config = RankEmbeddingStream(folder, config.data.shuffle_seed, train.batch_size)
    else:
        prompts = training_prompts(prompts, config)  # the held-out evaluation share removed
        dataset_config = RankPromptStream(prompts, config.data.shuffle_seed, train.batch_size)
    rows = ray.data.range(rows_per_rank(iterations, train.batch_size, train.num_workers))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config_to_dict(config), "progress_queue": progress_queue},
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=scaling_config(config),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=str(run_dir),
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=train.keep_checkpoints or None),
        ),
        datasets={PROMPT_STREAM: rows},
        dataset_config=dataset_config,
    )


def launch(config: RunConfig, show_progress: bool = True, console: Console | None = None) -> LaunchResult:
    """Run (or resume) `config` on the Ray cluster this process is connected to (or a local one).

    `ray.init()` honours RAY_ADDRESS, so the same call works under `ray job submit`. `console`
    (the jobs' `console.setup()`) decides what reaches the terminal; None keeps Ray's defaults.
    """
    check_teacher(config)
    check_fits(config)  # a GPU run that cannot fit train.gpu_memory_gib fails here, naming what to change
    tracking = dataclasses.replace(
        config.tracking, mlflow_uri=absolute_tracking_uri(config.tracking.mlflow_uri)
    )
    # absolute: the workers run in other folders and write the final export into the run folder
    output_dir = str(Path(config.output_dir).resolve())
    config = dataclasses.replace(config, tracking=tracking, output_dir=output_dir)
    if not ray.is_initialized():
        init_ray(console, _worker_env())
    reserved = check_data_stage(config)  # a data stream that could never run fails here, not hangs
    if show_progress:
        print(reserved, flush=True)
    run_dir = Path(config.output_dir).resolve() / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    in_place = console is not None and console.quiet  # one line rewritten in a terminal
    printer = ProgressPrinter(config.train.total_kimg, show_lines=show_progress, in_place=in_place)
    printer.start()
    try:
        result = build_trainer(config, printer.queue).fit()
    except BaseException:
        printer.stop()
        printer.summary("failed")
        raise
    rows = printer.stop()
    export_dir = None
    ckpt_path = result.checkpoint.path if result.checkpoint else None
    if ckpt_path and (Path(ckpt_path) / EXPORT_DIR).is_dir():
        # the final checkpoint's generator weights beside the pipeline folder rank 0 wrote there
        export_dir = run_dir / EXPORT_DIR
        export_dir.mkdir(exist_ok=True)
        for file in (Path(ckpt_path) / EXPORT_DIR).iterdir():
            if file.is_file():
                file_in_run = export_dir / file.name
                file_in_run.unlink(missing_ok=True)
                _link_or_copy(str(file), str(file_in_run))
    summary = printer.summary(
        "finished",
        {"checkpoint": ckpt_path, "export": str(export_dir) if export_dir else "none"},
    )
    return LaunchResult(run_dir, export_dir, dict(result.metrics or {}), ckpt_path, rows, summary)


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link where the storage allows (no second copy of a large file), else a copy."""
    try:
        os.link(source, destination)
    except OSError:  # another file system (cloud or network storage), or links not supported
        shutil.copy2(source, destination)


def _worker_env() -> dict[str, str]:
    # the teacher-fit cache is shared by the driver and the workers of a local cluster
    env = {}
    for key in ("SID_RAY_CACHE",):
        if key in os.environ:
            env[key] = os.environ[key]
    return env
