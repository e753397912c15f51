"""In-training evaluation and the divergence stop, shared by the Ray worker and `run_local`.

Every `eval.every_kimg` (and at the run's end) the current generator, its EMA when one is kept,
samples the fixed prompt/seed set, the chunks split over the ranks (`eval.generator_eval`), and
the metrics join the iteration's row: `eval_fid`, `eval_<alignment>`, the seconds it took and
the share of the run's wall time evaluation has taken so far. The SiD losses oscillate around
zero and say little about convergence; FID does, so a sweep's scheduler stops on it, and a run
whose losses or FID turn non-finite or explode (`eval.max_loss`, `eval.max_fid`) is stopped as
diverged instead of burning its remaining budget. A run trained from `data.embedding_cache`
evaluates on the same prompts (the cache's held-out rows, else the teacher's fixed set), their
embeddings read from the cache (`CachedPromptEncoder`): the held-out rows of its shards, and the
evaluation file the embedding stage encoded the others into.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.eval.generator_eval import (
    Gather,
    GeneratorEval,
    eval_prompt_list,
    eval_prompt_set,
    evaluate_generator,
)
from sid_ray.eval.scorers import FID_KEY, scorer_for
from sid_ray.train.cached_prompts import CachedPromptEncoder, uses_embedding_cache


class InTrainingEval:
    """The evaluation schedule, the prompt set and scorer of one process, and its time spent."""

    def __init__(self, config: RunConfig, adapter, held_out: list[str] | None, dtype: torch.dtype):
        self.config, self.adapter, self.dtype = config, adapter, dtype
        self.every = max(1, round(config.eval.every_kimg * 1000 / config.train.batch_size))
        self.prompts = eval_prompt_set(config, held_out)
        self.scorer = scorer_for(config, adapter.device)
        self.alignment_name = self.scorer.alignment_name
        self.started, self.seconds = time.perf_counter(), 0.0
        self.last: GeneratorEval | None = None

    @classmethod
    def create(cls, config: RunConfig, adapter, held_out, dtype) -> InTrainingEval | None:
        """None when `eval.every_kimg` is 0. Workers training from `data.embedding_cache` hold no
        text encoder: their evaluation prompts' embeddings come from the cache, which the embedding
        stage encoded them into (`eval_prompt_list`, passed to `embedding_build`). Any other run without text
        encoders is refused."""
        if config.eval.every_kimg <= 0:
            return None
        if not config.model.load_text_encoders:
            if not uses_embedding_cache(config):
                raise ConfigError(
                    "eval.every_kimg: in-training evaluation encodes its prompts, and "
                    "model.load_text_encoders=false builds no text encoder; set eval.every_kimg=0 "
                    "and run jobs/evaluate.py on the checkpoints"
                )
            prompts = eval_prompt_list(config, held_out)
            adapter = CachedPromptEncoder(adapter, config.data.embedding_cache, prompts)
        return cls(config, adapter, held_out, dtype)

    def due(self, done: int, last: bool) -> bool:
        return last or done % self.every == 0

    def run(
        self, generator: torch.nn.Module, ema, rank: int = 0, world: int = 1, gather: Gather | None = None
    ) -> dict:
        """The evaluation's metrics for the row (identical on every rank)."""
        with ema.swapped_in() if ema is not None else contextlib.nullcontext():
            result = evaluate_generator(
                self.adapter,
                generator,
                self.prompts,
                self.scorer,
                self.config,
                self.dtype,
                rank,
                world,
                gather,
                self.config.eval.grid_samples,
            )
        self.last = result
        self.seconds += result.seconds
        return {**result.metrics, "eval_seconds": result.seconds, "eval_share_of_wall": self.share()}

    def share(self) -> float:
        """Evaluation's share of this process's wall time since the loop started."""
        return self.seconds / max(time.perf_counter() - self.started, 1e-9)

    def summary(self) -> str:
        wall = time.perf_counter() - self.started
        return (
            f"in-training evaluation: {self.seconds:.1f} s of {wall:.1f} s wall "
            f"({100 * self.share():.1f} %), {len(self.prompts)} samples every {self.every} iterations"
        )


def divergence(row: dict, config: RunConfig) -> str | None:
    """Why the run counts as diverged at this row, or None. Non-finite or exploded losses, every
    sample of an iteration dropped as non-finite, or a non-finite or exploded FID."""
    ev = config.eval
    for key, value in row.items():
        if not key.startswith("loss/"):
            continue
        if not math.isfinite(value):
            return f"{key} is {value}"
        if ev.max_loss > 0 and abs(value) > ev.max_loss:
            return f"|{key}| = {abs(value):.4g} exceeds eval.max_loss = {ev.max_loss:g}"
    if row.get("nan_dropped_samples", 0) >= config.train.batch_size:
        return "every sample of the iteration was non-finite (nan_dropped_samples = batch size)"
    fid = row.get(FID_KEY)
    if fid is not None and not math.isfinite(fid):
        return f"{FID_KEY} is {fid}"
    if fid is not None and ev.max_fid > 0 and fid > ev.max_fid:
        return f"{FID_KEY} = {fid:.4g} exceeds eval.max_fid = {ev.max_fid:g}"
    return None


def diverged_message(reason: str, row: dict) -> str:
    return (
        f"run diverged at kimg {row.get('kimg', float('nan')):.3f} (iteration {row.get('iteration')}): "
        f"{reason}; stopped. Lower optim.generator_lr / optim.fake_lr or check the guidance settings."
    )
