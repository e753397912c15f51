"""The training iterations, written once: the Ray worker and the single-process run both call them.

Top to bottom, one iteration: the learning rate for the images seen so far, this process's
prompts (and real latents), micro-batches with their global noise keys, `distill_step`, the
generator's EMA. What differs between callers stays with them: where the batches come from (a
prompt cycle, or this rank's slice of the Ray Data stream), which optimisers the rates go to
(torch's, or DeepSpeed engines'), and what happens after an iteration (a history row, or a
reduced metric row, a Ray report and checkpoints).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from sid_ray.config.schema import RunConfig
from sid_ray.data.embedding_cache import EncodedPrompts
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, StepMetrics, distill_step
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.lr_schedule import lr_factor, set_lr
from sid_ray.train.sid_settings import settings_from_config

# one iteration's rows of this process: the prompts (or their cached embeddings), and the real
# latents of data-aided runs
Batch = tuple[Sequence[str] | EncodedPrompts, torch.Tensor | None]


@dataclass
class Trainee:
    """What the iterations train, and the optimisers whose learning rates they schedule."""

    adapter: object  # encode_prompts(prompts) -> Conditioning, latent_shape
    nets: SiDNetworks
    fake_optimizer: torch.optim.Optimizer
    generator_optimizer: torch.optim.Optimizer
    ema: ParameterEMA | None
    device: torch.device
    dtype: torch.dtype  # of the latents and conditions entering the networks
    first_noise_key: int = 0  # rank x micro-batches per iteration: keys are global over ranks
    notes: list[str] = field(default_factory=list)  # how the networks run, for the log


def iterations(
    config: RunConfig, trainee: Trainee, batches: Iterable[Batch], start: int, stop: int
) -> Iterator[tuple[int, StepMetrics]]:
    """Run iterations start..stop-1, one batch each; yields (iterations done, the step's metrics)."""
    train, optim = config.train, config.optim
    settings = settings_from_config(config.sid)
    batches = iter(batches)
    for iteration in range(start, stop):
        kimg = iteration * train.batch_size / 1000  # images seen before this iteration
        factor = lr_factor(optim, kimg, train.total_kimg)
        set_lr(trainee.fake_optimizer, optim.fake_lr * factor)
        set_lr(trainee.generator_optimizer, optim.generator_lr * factor)
        micro = micro_batches(trainee, next(batches), train.micro_batch_size)
        ctx = StepContext(
            train.seed, iteration, trainee.adapter.latent_shape, trainee.device, trainee.dtype, kimg
        )
        metrics = distill_step(trainee.nets, micro, settings, ctx)
        if trainee.ema is not None:
            trainee.ema.update(train.batch_size)
        yield iteration + 1, metrics


def micro_batches(trainee: Trainee, batch: Batch, size: int) -> list[MicroBatch]:
    """This process's rows as micro-batches of `size`, encoded once, with global noise keys."""
    prompts, real = batch
    if isinstance(prompts, EncodedPrompts):  # read from data.embedding_cache: no encoder runs
        cond = prompts.conditioning.to(trainee.device, trainee.dtype)
    else:
        cond = trainee.adapter.encode_prompts([str(p) for p in prompts]).to(trainee.device, trainee.dtype)
    if real is not None:
        real = torch.as_tensor(real).to(trainee.device, trainee.dtype)
    out = []
    for j in range(len(prompts) // size):
        rows = slice(j * size, (j + 1) * size)
        part = None if real is None else real[rows]
        out.append(MicroBatch(cond.select(rows), size, trainee.first_noise_key + j, real=part))
    return out
