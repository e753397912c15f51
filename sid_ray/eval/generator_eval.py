"""Evaluate a generator on the fixed prompt/seed set, the work split over ranks.

The set is cut into chunks of `eval.batch_size` samples, chunk c going to rank c mod world. A
chunk's images depend only on the chunk (each sample's noise from its own seed; the roll-out's
fresh noise from `eval.seed` anew per chunk), never on the rank or the number of ranks, so the
in-training evaluation on N workers and `jobs/evaluate.py` on one process score the same images.
Every rank runs the same number of generator calls (the short ones repeat a chunk and drop it):
under ZeRO-3 each call gathers parameters collectively.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sid_ray.config.schema import RunConfig
from sid_ray.eval.evaluate import generator_sampler
from sid_ray.eval.prompts import PromptSet, digits_prompt_set, text_prompt_set
from sid_ray.eval.scorers import DIGITS_TEACHERS, SampleScorer, ScoreParts, combine

#: gathers one picklable object from every rank, in rank order (torch.distributed's all_gather_object)
Gather = Callable[[object], list]


@dataclass
class GeneratorEval:
    metrics: dict[str, float]
    grid: torch.Tensor  # the first `grid_samples` images, in prompt-set order (N, 3, H, W)
    seconds: float


def eval_prompt_set(config: RunConfig, held_out: list[str] | None = None) -> PromptSet:
    """`eval.num_samples` prompts with seeds eval.seed + i: the run's held-out prompts (by hash,
    never trained on) in turn when there are any, else the teacher's fixed set (the digits
    world's ten class prompts, which its training also draws; real teachers' `TEXT_PROMPTS`)."""
    n, seed = config.eval.num_samples, config.eval.seed
    if held_out:
        prompts = tuple(held_out[i % len(held_out)] for i in range(n))
        return PromptSet(prompts, tuple(seed + i for i in range(n)))
    if config.model.name in DIGITS_TEACHERS:
        return digits_prompt_set(n, seed)
    return text_prompt_set(n, seed)


def eval_prompt_list(config: RunConfig, held_out: list[str]) -> list[str]:
    """The distinct prompts of `eval_prompt_set`, in order: what an embedding cache encodes for
    in-training evaluation (`sid_ray.data.embedding_build`'s `eval_prompts`)."""
    return list(dict.fromkeys(eval_prompt_set(config, held_out).prompts))


def rank_chunks(num_samples: int, chunk: int, rank: int, world: int) -> list[tuple[int, int] | None]:
    """(start, stop) of this rank's chunks; None pads to the same count on every rank."""
    total = math.ceil(num_samples / chunk)
    mine = [(c * chunk, min((c + 1) * chunk, num_samples)) for c in range(rank, total, world)]
    return mine + [None] * (math.ceil(total / world) - len(mine))


@torch.no_grad()
def sample_chunk(
    adapter, generator, prompts: PromptSet, config: RunConfig, dtype: torch.dtype
) -> torch.Tensor:
    """Images (n, 3, H, W) in [0, 1] of the generator's K-step roll-out for one chunk."""
    K = config.sid.num_steps
    sampler = generator_sampler(
        generator,
        K,
        K,
        config.sid.generator_guidance,
        seed=config.eval.seed,
        time_shift=config.sid.rollout_time_shift,
    )
    cond = adapter.encode_prompts(list(prompts.prompts)).to(adapter.device, dtype)
    z = prompts.noise(tuple(adapter.latent_shape)).to(adapter.device, dtype)  # CPU draws: any device
    return adapter.decode(sampler(cond, z)).float().cpu()


def evaluate_generator(
    adapter,
    generator,
    prompts: PromptSet,
    scorer: SampleScorer,
    config: RunConfig,
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world: int = 1,
    gather: Gather | None = None,
    grid_samples: int = 10,
) -> GeneratorEval:
    """The metrics of `generator` on `prompts` (the same on every rank), and the grid's images."""
    begin = time.perf_counter()
    parts: list[ScoreParts] = []
    grid: list[tuple[int, torch.Tensor]] = []
    for chunk in rank_chunks(len(prompts), config.eval.batch_size, rank, world):
        start, stop = chunk or (0, min(config.eval.batch_size, len(prompts)))
        part = prompts.slice(start, stop)
        images = sample_chunk(adapter, generator, part, config, dtype)
        if chunk is None:
            continue  # a repeated chunk: it only kept the ranks' collective calls in step
        parts.append(scorer.parts(images, part))
        if start < grid_samples:
            grid.append((start, images[: grid_samples - start]))
    gathered = gather((parts, grid)) if gather is not None else [(parts, grid)]
    all_parts = [p for rank_parts, _ in gathered for p in rank_parts]
    all_grid = sorted((g for _, rank_grid in gathered for g in rank_grid), key=lambda g: g[0])
    metrics = combine(scorer, all_parts)
    grid_images = torch.cat([g for _, g in all_grid]) if all_grid else torch.empty(0)
    return GeneratorEval(metrics, grid_images, time.perf_counter() - begin)
