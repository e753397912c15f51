"""Fixed prompt and seed sets: balanced digits, per-sample seeds, batch-independent noise."""

from __future__ import annotations

import pytest
import torch

from sid_ray.eval.prompts import TEXT_PROMPTS, PromptSet, digits_prompt_set, text_prompt_set
from sid_ray.toys.digits_data import digit_of_prompt


def test_digits_set_is_balanced_and_labelled() -> None:
    ps = digits_prompt_set(100, seed=7)
    assert len(ps) == 100
    assert ps.prompts[7] == "a handwritten seven"
    assert [digit_of_prompt(p) for p in ps.prompts] == list(ps.digits)
    assert torch.bincount(torch.tensor(ps.digits)).tolist() == [10] * 10
    assert ps.seeds == tuple(range(7, 107))


def test_noise_of_a_sample_depends_on_its_seed_only() -> None:
    ps = digits_prompt_set(12, seed=3)
    whole = ps.noise((4, 5))
    parts = torch.cat([ps.slice(0, 5).noise((4, 5)), ps.slice(5, 12).noise((4, 5))])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole[0], whole[1])
    assert torch.equal(digits_prompt_set(12, seed=3).noise((4, 5)), whole)


def test_text_set_cycles_the_fixed_prompts() -> None:
    ps = text_prompt_set(len(TEXT_PROMPTS) + 2)
    assert ps.prompts[: len(TEXT_PROMPTS)] == TEXT_PROMPTS
    assert ps.prompts[-1] == TEXT_PROMPTS[1]
    assert ps.digits is None


def test_mismatched_seeds_are_rejected() -> None:
    with pytest.raises(ValueError, match="seeds"):
        PromptSet(("a",), (1, 2))


@pytest.mark.parametrize("bad", ["a handwritten ten", "seven", "a handwritten"])
def test_prompts_without_a_digit_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="names no digit"):
        digit_of_prompt(bad)
