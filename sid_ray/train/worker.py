"""`train_loop_per_worker`: one Ray Train worker of a distributed SiD run.

Per worker: T frozen (ZeRO-3, no optimiser), F and G as DeepSpeed engines, this rank's slice of
the prompt stream, and the iterations every run shares (`sid_ray.train.loop.iterations`) with
micro-batch noise keys rank * accumulation + j, so N workers compute what one process with
N x accumulation computes. What is here is only what is distributed: the process group, the
engines, the rank's data, the reduction of metrics over ranks, reports and checkpoints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import deepspeed
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from sid_ray.config.io import from_dict
from sid_ray.config.schema import RunConfig
from sid_ray.data.data_tracking import log_stage
from sid_ray.models.loading import torch_dtype
from sid_ray.models.registry import build_adapter_on
from sid_ray.sid.step import SiDNetworks
from sid_ray.train import checkpoint
from sid_ray.train.attention import select_attention_backend
from sid_ray.train.cached_prompts import check_worker_adapter, worker_config
from sid_ray.train.checkpoint_report import write_and_report
from sid_ray.train.ds_config import check_batch
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.in_training_eval import InTrainingEval, diverged_message, divergence
from sid_ray.train.loop import Trainee, iterations
from sid_ray.train.parallelize import parallelize
from sid_ray.train.rank_stream import rank_batches
from sid_ray.train.tracking import make_tracker


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


def build_networks(config: RunConfig, rank: int, device: torch.device) -> tuple[object, SiDNetworks, str]:
    """The adapter, T, F and G as `parallelize` runs them, and its line saying how."""
    adapter = build_adapter_on(config, device)
    fake_module, generator_module = _trainable_copies(adapter, config, rank)
    nets, plan = parallelize(config, adapter, fake_module, generator_module, device)
    return adapter, nets, plan


def _mean_over_ranks(values: list[torch.Tensor], device: torch.device) -> list[float]:
    """Global means in one collective, reduced where the process group's backend can:
    on the GPU under NCCL (which has no CPU tensors), on the CPU under gloo."""
    stacked = torch.stack([v.detach().to(device, torch.float64) for v in values])
    dist.all_reduce(stacked)
    return (stacked / dist.get_world_size()).tolist()


def train_loop_per_worker(loop_config: dict) -> None:
    """One rank of the run: join the group, build and restore, then the shared iterations, with
    this rank's reduced metric rows, evaluations, reports and checkpoints after them."""
    config: RunConfig = worker_config(from_dict(loop_config["config"]))
    rank, device = _join_process_group(config)
    train = config.train
    total_iterations = math.ceil(train.total_kimg * 1000 / train.batch_size)
    checkpoint_every = max(1, round(train.checkpoint_every_kimg * 1000 / train.batch_size))
    attention = select_attention_backend(train.attention_backend, device)
    trainee = build_trainee(config, rank, device)
    check_worker_adapter(config, trainee.adapter)  # a cached run: matching cache, no text encoders
    state, resumed_from = _restore(config, trainee, rank)
    tracker = make_tracker(config, rank, state.mlflow_run_id)
    if tracker is not None:
        state.mlflow_run_id = tracker.run_id
    log_stage(tracker, loop_config, state.iteration)  # the data counts, before the first iteration
    reporter = Reporter(config, rank, device, tracker, loop_config.get("progress_queue"), resumed_from)
    reporter.say(attention, *trainee.notes)
    # held-out prompts (by hash) the launcher removed from the training stream
    evaluator = InTrainingEval.create(config, trainee.adapter, loop_config.get("eval_prompts"), trainee.dtype)
    if state.iteration >= total_iterations and state.reported:
        reporter.ended(state.reported, state.kimg)  # started again after its last checkpoint
    batches = rank_batches(config, rank, state.iteration)
    for done, metrics in iterations(config, trainee, batches, state.iteration, total_iterations):
        state.advance_to(done, train.batch_size)
        last = done == total_iterations
        save_now = done % checkpoint_every == 0 or last
        eval_now = evaluator is not None and evaluator.due(done, last)
        if not (save_now or eval_now or done % train.log_every == 0):
            reporter.count_iteration()
            continue
        row = reporter.row(metrics, state, _evaluate(evaluator, trainee, rank) if eval_now else {})
        if eval_now:  # its grid, also when this evaluation is the one that finds the run diverged
            reporter.evaluation(evaluator, state.kimg)
        reason = divergence(row, config)  # rows are global means: every rank decides the same
        if reason is not None:
            reporter.diverged(diverged_message(reason, row), row)
            break
        if save_now:
            _save_and_report(config, trainee, state, reporter, row, last)
        else:
            ray.train.report(row)
        reporter.restart_window()
    reporter.finish(evaluator)


def _evaluate(evaluator: InTrainingEval, trainee: Trainee, rank: int) -> dict:
    """The evaluation's metrics, its chunks shared over the ranks (collective)."""

    def gather(item: object) -> list:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, item)
        return out

    generator = trainee.nets.generator.engine.module
    return evaluator.run(generator, trainee.ema, rank, dist.get_world_size(), gather)


def _join_process_group(config: RunConfig) -> tuple[int, torch.device]:
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    assert world == config.train.num_workers, (world, config.train.num_workers)
    device = ray.train.torch.get_device()
    deepspeed.init_distributed(dist_backend="nccl" if config.train.use_gpu else "gloo")
    return rank, device


def build_trainee(config: RunConfig, rank: int, device: torch.device) -> Trainee:
    """The networks as DeepSpeed engines, G's EMA (on this rank's ZeRO partition), and this
    rank's place in the global noise keys (rank x micro-batches per iteration)."""
    adapter, nets, plan = build_networks(config, rank, device)
    halflife = config.train.ema_halflife_kimg
    ema = ParameterEMA(nets.generator.engine.module, halflife) if halflife > 0 else None
    optimizers = nets.fake.engine.optimizer, nets.generator.engine.optimizer
    first_key = rank * check_batch(config)
    trainee = Trainee(
        adapter, nets, *optimizers, ema, device, latent_dtype(config), first_noise_key=first_key
    )
    trainee.notes.append(f"networks: {plan}")
    return trainee


def _restore(config: RunConfig, trainee: Trainee, rank: int) -> tuple[checkpoint.TrainState, float | None]:
    """(the counters, the kimg resumed from) from Ray's latest checkpoint of this run, if any."""
    restored = ray.train.get_checkpoint()
    if restored is None:
        return checkpoint.TrainState(seed=config.train.seed), None
    with restored.as_directory() as folder:
        nets = trainee.nets
        state = checkpoint.load(Path(folder), nets.fake, nets.generator, rank, trainee.ema)
    return state, state.kimg


class Reporter:
    """A rank's metric rows: global means over ranks (one collective), throughput over the window
    since the last row, the GPU's peak memory; rank 0 sends them to MLflow and the driver."""

    def __init__(self, config: RunConfig, rank: int, device: torch.device, tracker, queue, resumed_from):
        self.batch_size, self.rank, self.device = config.train.batch_size, rank, device
        self.tracker, self.queue, self.resumed_from = tracker, queue, resumed_from
        self.restart_window()

    def restart_window(self) -> None:
        self.window_start, self.window_iterations = time.perf_counter(), 0

    def count_iteration(self) -> None:
        self.window_iterations += 1

    def row(self, metrics, state: checkpoint.TrainState, evaluation: dict) -> dict:
        self.count_iteration()
        logged = metrics.tensors()
        means = dict(zip(logged, _mean_over_ranks(list(logged.values()), self.device), strict=True))
        means["nan_dropped_samples"] *= dist.get_world_size()  # a count: the global sum
        elapsed = time.perf_counter() - self.window_start
        row = {"iteration": state.iteration, "kimg": state.kimg, "k": metrics.num_steps, **means}
        row["img_per_s"] = self.window_iterations * self.batch_size / max(elapsed, 1e-9)
        row["s_per_iteration"] = elapsed / max(self.window_iterations, 1)
        if self.device.type == "cuda":  # this rank's high-water mark since the run (or resume) started
            row["gpu_mem_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.resumed_from is not None:
            row["resumed_from_kimg"], self.resumed_from = self.resumed_from, None
        row.update(evaluation)
        if self.rank == 0:
            self._send(row, state.iteration)
        return row

    def say(self, *lines: str) -> None:
        """Rank 0's one-off lines (how the networks run) to the driver's console, which prints
        them even when worker output is off; with no driver listening, to the worker's own log
        (printing both would show each line twice under `--verbose`)."""
        if self.rank != 0:
            return
        for line in lines:
            if self.queue is None:
                print(line, flush=True)
            else:
                self._put({"message": line})

    def evaluation(self, evaluator: InTrainingEval, kimg: float) -> None:
        """Rank 0: the evaluation's grid and the curve so far, to MLflow."""
        if self.tracker is not None and evaluator.last is not None:
            scorer = evaluator.scorer
            self.tracker.log_evaluation(
                kimg, evaluator.last.grid, scorer.alignment_key, scorer.alignment_name
            )

    def diverged(self, message: str, row: dict) -> None:
        """Stop as diverged: the message to the driver, the row reported, the MLflow run tagged
        and failed (every rank: the report is collective)."""
        row["diverged"] = 1.0
        self.say(message)
        ray.train.report(row)
        if self.tracker is not None:
            self.tracker.mark_diverged(message)
            self.tracker = None

    def ended(self, reported: dict, kimg: float) -> None:
        """A run started again after its last checkpoint: its last row once more, to the driver
        and to Ray Train, whose callers' record of the run may predate that checkpoint (Tune's,
        when a sweep resumes after an interrupt, would call the finished trial stopped early).
        MLflow has the row already. Collective: every rank reports."""
        row = {**reported, "resumed_from_kimg": kimg}
        if self.rank == 0:
            self._put(row)
        ray.train.report(row)

    def finish(self, evaluator: InTrainingEval | None) -> None:
        if evaluator is not None:
            self.say(evaluator.summary())  # its share of the run's wall time
        if self.tracker is not None:
            self.tracker.close()

    def _send(self, row: dict, iteration: int) -> None:
        if self.tracker is not None:
            self.tracker.log(row, step=iteration)
        self._put(row)

    def _put(self, item: dict) -> None:
        if self.queue is not None:
            try:
                self.queue.put_nowait(item)
            except Exception:  # the driver went away or its queue is full: never stop training
                pass


def _save_and_report(
    config: RunConfig, trainee: Trainee, state, reporter: Reporter, row: dict, last: bool
) -> None:
    """A checkpoint of every rank's part, reported with `row`; the last one exports G, its
    pipeline folder straight into the run folder (rank 0), outside the checkpoints, and logs the
    export to MLflow."""
    nets, rank = trainee.nets, reporter.rank
    state.reported = {k: v for k, v in row.items() if isinstance(v, int | float | str | bool)}
    pipeline = Path(config.output_dir) / config.name / checkpoint.EXPORT_DIR / checkpoint.PIPELINE_DIR

    def write(folder: Path) -> None:
        checkpoint.save(folder, nets.fake, nets.generator, state, rank, trainee.ema)
        export = checkpoint.export_generator(
            folder,
            nets.generator,
            trainee.adapter,
            config,
            rank,
            trainee.ema,
            final=last,
            pipeline_folder=pipeline,
        )
        if last and reporter.tracker is not None and export is not None:
            reporter.tracker.log_model(export / checkpoint.GENERATOR_WEIGHTS, pipeline)

    write_and_report(f"checkpoint_{state.iteration:08d}", rank, row, write)
