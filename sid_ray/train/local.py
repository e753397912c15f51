"""Single-process SiD distillation (no Ray, no DeepSpeed): the reference the distributed run matches.

It calls the same `distill_step` as the Ray Train worker; only the TrainedNetwork differs.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sid_ray.config.io import dump_config
from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data.prompt_sources import split_prompts
from sid_ray.models.base import FlowModel
from sid_ray.models.loading import torch_dtype
from sid_ray.models.registry import build_adapter_on, default_prompts
from sid_ray.sid.step import SiDNetworks
from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam
from sid_ray.train.attention import select_attention_backend
from sid_ray.train.cached_prompts import cached_batches, held_out_prompts, uses_embedding_cache
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.in_training_eval import InTrainingEval, diverged_message, divergence
from sid_ray.train.loop import Batch, Trainee, iterations
from sid_ray.train.parallelize import transform_networks
from sid_ray.train.prompt_cycle import PromptCycle


@dataclass
class LocalResult:
    adapter: object
    generator: FlowModel  # the generator to evaluate and export: the EMA when one is kept
    fake: FlowModel
    raw_generator: FlowModel | None = None  # the last iterate, when `generator` is its EMA
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: str = ""  # why the run was stopped as diverged (eval.max_loss, eval.max_fid), if it was


def _network(module, config: RunConfig, lr: float, accumulation: int) -> TorchTrainedNetwork:
    o = config.optim
    optimizer = sid_adam(module.parameters(), lr, (o.beta1, o.beta2), o.eps, o.weight_decay)
    return TorchTrainedNetwork(module, optimizer, accumulation, o.grad_clip)


def run_local(
    config: RunConfig,
    prompts: list[str] | None = None,
    log: Callable[[str], None] | None = print,
    write_config: bool = True,
    on_log: Callable[[dict, LocalResult], None] | None = None,
    device: torch.device | str | None = None,
    pairs=None,
) -> LocalResult:
    """Distill `config.model` on one process for `config.train.total_kimg` thousand images.

    `config.train.num_workers` ranks are emulated by accumulation: micro-batch j of an
    iteration draws its noise from key j, exactly as rank j (accumulation 1) would.
    Data-aided runs (`sid.data_aided.enabled`) take (captions, real latents) from `pairs` (an
    object with `take(n)`, by default a `PairCycle` over the encoded `data.images`).
    """
    train = config.train
    if write_config:
        dump_config(config, Path(config.output_dir) / config.name / "config.yaml")
    torch.manual_seed(train.seed)
    device = torch.device(device or ("cuda" if train.use_gpu else "cpu"))
    select_attention_backend(train.attention_backend, device)
    trainee = _trainee(config, device)
    if log:
        for note in trainee.notes:  # what checkpointing and compilation were applied
            log(note)
    # after the networks: as the RNG streams always were
    batches, held_out = _batches(config, prompts, pairs)
    iterations_total = math.ceil(train.total_kimg * 1000 / train.batch_size)
    result = LocalResult(trainee.adapter, trainee.nets.generator.module, trainee.nets.fake.module)
    evaluator = InTrainingEval.create(config, trainee.adapter, held_out, trainee.dtype)
    start = time.perf_counter()
    for done, metrics in iterations(config, trainee, batches, 0, iterations_total):
        eval_now = evaluator is not None and evaluator.due(done, done == iterations_total)
        if done % train.log_every == 0 or done == iterations_total or eval_now:
            row = {"iteration": done, "kimg": done * train.batch_size / 1000, **metrics.as_floats()}
            if eval_now:
                row.update(evaluator.run(trainee.nets.generator.module, trainee.ema))
            result.history.append(row)
            if on_log:
                on_log(row, result)
            if log:
                log(_line(row))
            reason = divergence(row, config)
            if reason is not None:
                result.diverged = diverged_message(reason, row)
                if log:
                    log(result.diverged)
                break
    result.seconds = time.perf_counter() - start
    if evaluator is not None and log:
        log(evaluator.summary())
    if trainee.ema is not None:
        result.raw_generator = copy.deepcopy(result.generator)
        with trainee.ema.swapped_in():
            result.generator = copy.deepcopy(result.generator)
    return result


def _trainee(config: RunConfig, device: torch.device) -> Trainee:
    """The adapter on `device`, F and G with plain torch Adam, and G's EMA."""
    train = config.train
    adapter = build_adapter_on(config, device)
    dtype = torch_dtype(config.model.dtype)
    fake = adapter.make_trainable_copy("fake").to(device, dtype)
    generator = adapter.make_trainable_copy("generator").to(device, dtype)
    notes = transform_networks(config, adapter, fake, generator)
    micro_per_iteration = train.batch_size // train.micro_batch_size
    fake_net = _network(fake, config, config.optim.fake_lr, micro_per_iteration)
    generator_net = _network(generator, config, config.optim.generator_lr, micro_per_iteration)
    ema = ParameterEMA(generator, train.ema_halflife_kimg) if train.ema_halflife_kimg > 0 else None
    nets = SiDNetworks(adapter.teacher, fake_net, generator_net)
    return Trainee(
        adapter, nets, fake_net.optimizer, generator_net.optimizer, ema, device, dtype, notes=notes
    )


def _batches(config: RunConfig, prompts: list[str] | None, pairs) -> tuple[Iterator[Batch], list[str]]:
    """Each iteration's global batch: captions and real latents (data-aided), or prompts; and the
    prompts held out by hash for evaluation (the cache's held-out rows for cached runs; none for
    data-aided runs).
    Checked here, before the first iteration: a run without prompts fails before training."""
    batch_size = config.train.batch_size
    if config.sid.data_aided.enabled:
        if pairs is None:
            from sid_ray.data.image_pairs import encode_pairs
            from sid_ray.data.pair_stream import PairCycle

            pairs = PairCycle(encode_pairs(config), seed=config.data.shuffle_seed)
        return (pairs.take(batch_size) for _ in itertools.count()), []
    if uses_embedding_cache(config):
        # the cache's training rows, in the prompt stream's order; its held-out rows for evaluation
        return cached_batches(config), held_out_prompts(config.data.embedding_cache)
    prompts = prompts or default_prompts(config.model)
    if not prompts:
        raise ConfigError(
            f"run_local: {config.model.name} has no prompt list of its own; pass `prompts` "
            "(the Ray launcher reads data.prompts)"
        )
    # the held-out evaluation share (by hash) is never trained on, as in the Ray launcher
    train, held_out = split_prompts(prompts, config.data.eval_prompt_fraction)
    stream = PromptCycle(train, seed=config.data.shuffle_seed)
    return ((stream.take(batch_size), None) for _ in itertools.count()), held_out


def _line(row: dict) -> str:
    return (
        f"it {row['iteration']:5d}  kimg {row['kimg']:7.2f}  k {int(row['k'])}  "
        f"L_F {row['loss/fake']:.4g}  L_G {row['loss/generator']:.4g}  "
        f"dropped {int(row['nan_dropped_samples'])}"
        + (f"  L_D {row['loss/discriminator']:.4g}" if "loss/discriminator" in row else "")
        + (f"  FID {row['eval_fid']:.3f}" if "eval_fid" in row else "")
    )
