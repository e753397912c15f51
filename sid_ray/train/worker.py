"""`train_loop_per_worker`: one Ray Train worker of a distributed SiD run.

Per worker: T frozen (ZeRO-3, no optimiser), F and G as DeepSpeed engines, this rank's slice of
the prompt stream, and the unchanged `distill_step` with micro-batch noise keys
rank * accumulation + j, so N workers compute what one process with N x accumulation computes.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import deepspeed
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from sid_ray.config.io import from_dict
from sid_ray.config.schema import RunConfig
from sid_ray.data.prompts import PROMPT_STREAM
from sid_ray.models.loading import torch_dtype
from sid_ray.models.registry import build_adapter_on
from sid_ray.sid.step import MicroBatch, distill_step
from sid_ray.train import checkpoint
from sid_ray.train.attention import select_attention_backend
from sid_ray.train.ds_config import check_batch, teacher_config, trained_network_config
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.engines import (
    DeepSpeedTrainedNetwork,
    EngineVelocity,
    build_teacher,
    build_trained_network,
)
from sid_ray.train.lr_schedule import lr_factor, set_lr
from sid_ray.train.sid_settings import settings_from_config
from sid_ray.train.tracking import make_tracker


@dataclass
class Networks:
    adapter: object
    teacher: EngineVelocity
    fake: DeepSpeedTrainedNetwork
    generator: DeepSpeedTrainedNetwork


def latent_dtype(config: RunConfig) -> torch.dtype:
    # bf16 engines hold bf16 weights, so latents and conditions enter them in bf16
    return torch.bfloat16 if config.train.mixed_precision == "bf16" else torch_dtype(config.model.dtype)


def _trainable_copies(adapter, config: RunConfig, rank: int):
    """F and G, identical on every rank: rank 0 builds first (the toy teachers fit and cache
    their copy), the others after a barrier, all from the same seed."""
    if rank != 0:
        dist.barrier()
    torch.manual_seed(config.train.seed)
    fake = adapter.make_trainable_copy("fake")
    generator = adapter.make_trainable_copy("generator")
    if rank == 0:
        dist.barrier()
    return fake, generator


def build_networks(config: RunConfig, rank: int, device: torch.device) -> Networks:
    adapter = build_adapter_on(config, device)
    fake_module, generator_module = _trainable_copies(adapter, config, rank)
    if config.model.gradient_checkpointing and hasattr(adapter, "set_gradient_checkpointing"):
        adapter.set_gradient_checkpointing(True, [fake_module, generator_module])
    shared_base = config.model.lora.mode == "shared_base"
    fake_cfg = trained_network_config(config, "fake")
    generator_cfg = trained_network_config(config, "generator")
    if config.model.lora.mode != "full":
        # LoRA views expose only their adapter weights as parameters(); ZeRO-3 then partitions
        # tensors that its gather hooks never fetch (measured: flux-tiny fails in G's first
        # forward). In shared_base mode F, G and T also share one base, which ZeRO-3 would
        # partition once per engine. Stage 2 shards what each engine trains (its LoRA weights,
        # their gradients and Adam state); the frozen base stays replicated.
        for ds in (fake_cfg, generator_cfg):
            ds["zero_optimization"] = {**ds["zero_optimization"], "stage": 2}
    fake = build_trained_network(fake_module.to(device), fake_cfg)
    generator = build_trained_network(generator_module.to(device), generator_cfg)
    if shared_base:
        teacher = EngineVelocity(adapter.teacher, through_engine=False)
    else:
        teacher = build_teacher(adapter.teacher.to(device), teacher_config(config))
    return Networks(adapter, teacher, fake, generator)


def _mean_over_ranks(values: list[torch.Tensor], device: torch.device) -> list[float]:
    """Global means in one collective, reduced where the process group's backend can:
    on the GPU under NCCL (which has no CPU tensors), on the CPU under gloo."""
    stacked = torch.stack([v.detach().to(device, torch.float64) for v in values])
    dist.all_reduce(stacked)
    return (stacked / dist.get_world_size()).tolist()


def train_loop_per_worker(loop_config: dict) -> None:
    config: RunConfig = from_dict(loop_config["config"])
    progress_queue = loop_config.get("progress_queue")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    assert world == config.train.num_workers, (world, config.train.num_workers)
    device = ray.train.torch.get_device()
    deepspeed.init_distributed(dist_backend="nccl" if config.train.use_gpu else "gloo")
    attention = select_attention_backend(config.train.attention_backend, device)
    if rank == 0:
        print(attention, flush=True)

    train = config.train
    accumulation = check_batch(config)
    per_rank = train.micro_batch_size * accumulation
    total_iterations = math.ceil(train.total_kimg * 1000 / train.batch_size)
    checkpoint_every = max(1, round(train.checkpoint_every_kimg * 1000 / train.batch_size))
    settings = settings_from_config(config.sid)
    dtype = latent_dtype(config)

    nets = build_networks(config, rank, device)
    # EMA of G's weights, on this rank's ZeRO partition (sid_ray/train/ema.py)
    ema = (
        ParameterEMA(nets.generator.engine.module, train.ema_halflife_kimg)
        if train.ema_halflife_kimg > 0
        else None
    )
    state = checkpoint.TrainState(seed=train.seed)
    resumed_from: float | None = None
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = checkpoint.load(Path(folder), nets.fake, nets.generator, rank, ema)
        resumed_from = state.kimg
    tracker = make_tracker(config, rank, state.mlflow_run_id)
    if tracker is not None:
        state.mlflow_run_id = tracker.run_id

    # this rank's rows, one iteration (micro_batch_size x accumulation prompts) per batch
    shard = ray.train.get_dataset_shard(PROMPT_STREAM)
    batches = iter(shard.iter_batches(batch_size=per_rank, batch_format="numpy", prefetch_batches=2))
    for _ in range(state.iteration):  # rows of iterations already trained (text only: cheap)
        next(batches)

    # the run's stock pipeline folder: written by rank 0 at the end, outside the checkpoints
    pipeline = Path(config.output_dir) / config.name / checkpoint.EXPORT_DIR / checkpoint.PIPELINE_DIR
    window_start, window_iterations = time.perf_counter(), 0
    for iteration in range(state.iteration, total_iterations):
        batch = next(batches)
        expected = iteration * train.batch_size + rank * per_rank
        if int(batch["position"][0]) != expected or len(batch["position"]) != per_rank:
            raise RuntimeError(
                f"rank {rank}: prompt stream out of step at iteration {iteration} "
                f"(position {int(batch['position'][0])}, expected {expected})"
            )
        # the same kimg-based schedule as the single-process loop, on DeepSpeed's optimisers
        factor = lr_factor(config.optim, iteration * train.batch_size / 1000, train.total_kimg)
        set_lr(nets.fake.engine.optimizer, config.optim.fake_lr * factor)
        set_lr(nets.generator.engine.optimizer, config.optim.generator_lr * factor)
        cond = nets.adapter.encode_prompts([str(p) for p in batch["prompt"]]).to(device, dtype)
        # data-aided runs: the captions' real latents ride in the same rows (RankPairStream)
        real = torch.as_tensor(batch["latents"]).to(device, dtype) if "latents" in batch else None
        micro = []
        for j in range(accumulation):
            rows = slice(j * train.micro_batch_size, (j + 1) * train.micro_batch_size)
            part = None if real is None else real[rows]
            micro.append(
                MicroBatch(cond.select(rows), train.micro_batch_size, rank * accumulation + j, real=part)
            )
        metrics = distill_step(
            nets.teacher,
            nets.fake,
            nets.generator,
            micro,
            settings,
            train.seed,
            iteration,
            nets.adapter.latent_shape,
            device=device,
            dtype=dtype,
            kimg=iteration * train.batch_size / 1000,
        )
        if ema is not None:
            ema.update(train.batch_size)
        window_iterations += 1
        state.iteration = iteration + 1
        state.kimg = state.iteration * train.batch_size / 1000
        state.data_position = state.iteration * train.batch_size

        last = state.iteration == total_iterations
        save_now = state.iteration % checkpoint_every == 0 or last
        if not (save_now or state.iteration % train.log_every == 0):
            continue
        # one collective for the global means of this iteration's losses (no .item() per step)
        logged = metrics.tensors()
        means = dict(zip(logged, _mean_over_ranks(list(logged.values()), device), strict=True))
        means["nan_dropped_samples"] *= world  # a count: the global sum
        elapsed = time.perf_counter() - window_start
        row = {
            "iteration": state.iteration,
            "kimg": state.kimg,
            "k": metrics.num_steps,
            **means,
            "img_per_s": window_iterations * train.batch_size / max(elapsed, 1e-9),
            "s_per_iteration": elapsed / max(window_iterations, 1),
        }
        if device.type == "cuda":  # this rank's high-water mark since the run (or resume) started
            row["gpu_mem_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        if resumed_from is not None:
            row["resumed_from_kimg"] = resumed_from
            resumed_from = None
        if rank == 0:
            if tracker is not None:
                tracker.log(row, step=state.iteration)
            if progress_queue is not None:
                try:
                    progress_queue.put_nowait(row)
                except Exception:  # the driver went away or its queue is full: never stop training
                    pass
        if save_now:
            with tempfile.TemporaryDirectory(prefix="sid-ckpt-") as tmp:
                folder = Path(tmp)
                checkpoint.save(folder, nets.fake, nets.generator, state, rank, ema)
                checkpoint.export_generator(
                    folder,
                    nets.generator,
                    nets.adapter,
                    config,
                    rank,
                    ema,
                    final=last,
                    pipeline_folder=pipeline,
                )
                ray.train.report(
                    row,
                    checkpoint=ray.train.Checkpoint.from_directory(tmp),
                    checkpoint_dir_name=f"checkpoint_{state.iteration:08d}",
                )
        else:
            ray.train.report(row)
        window_start, window_iterations = time.perf_counter(), 0
    if tracker is not None:
        tracker.close()
