"""The evaluation split over ranks scores the same images as one process: chunks, not ranks,
decide a sample's noise, and every rank makes the same number of generator calls."""

from __future__ import annotations

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.eval.generator_eval import eval_prompt_set, evaluate_generator, rank_chunks


@pytest.mark.parametrize(("num", "chunk", "world"), [(30, 8, 3), (100, 50, 2), (7, 10, 4), (64, 8, 8)])
def test_rank_chunks_cover_each_sample_once_with_equal_call_counts(num, chunk, world):
    per_rank = [rank_chunks(num, chunk, r, world) for r in range(world)]
    assert len({len(c) for c in per_rank}) == 1  # the same number of generator calls on every rank
    covered = sorted(i for chunks in per_rank for c in chunks if c is not None for i in range(*c))
    assert covered == list(range(num))


def test_sharded_evaluation_equals_single_process():
    from sid_ray.eval.scorers import DigitsScorer
    from sid_ray.models.registry import build_adapter

    config = load_config(
        None,
        ["model.name=digits-flux", "model.resolution=16", "sid.num_steps=2"]
        + ["eval.num_samples=30", "eval.batch_size=8"],
    )
    adapter = build_adapter(config)
    torch.manual_seed(0)
    generator = adapter.make_trainable_copy("generator").eval()
    prompts, scorer = eval_prompt_set(config), DigitsScorer()
    single = evaluate_generator(adapter, generator, prompts, scorer, config)

    others = []  # ranks 1 and 2 hand their parts over; rank 0 gathers them after its own
    for rank in (1, 2):
        evaluate_generator(
            adapter,
            generator,
            prompts,
            scorer,
            config,
            rank=rank,
            world=3,
            gather=lambda item: others.append(item) or [item] * 3,
        )
    sharded = evaluate_generator(
        adapter, generator, prompts, scorer, config, rank=0, world=3, gather=lambda item: [item, *others]
    )
    assert single.metrics["eval_num_samples"] == sharded.metrics["eval_num_samples"] == 30
    for key, value in single.metrics.items():
        assert sharded.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert torch.allclose(single.grid, sharded.grid, atol=1e-5)
    assert single.grid.shape[0] == config.eval.grid_samples


def test_held_out_prompts_are_the_evaluation_set():
    config = load_config(None, ["eval.num_samples=5", "eval.seed=7"])
    prompts = eval_prompt_set(config, ["a held-out prompt", "another one"])
    assert prompts.prompts == ("a held-out prompt", "another one") * 2 + ("a held-out prompt",)
    assert prompts.seeds == (7, 8, 9, 10, 11)
