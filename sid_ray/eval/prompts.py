"""Fixed evaluation prompts and seeds: every checkpoint and every sampler sees the same ones.

Sample i of a set is drawn from noise seeded by `seeds[i]` alone, so a sample does not depend on
the batch size or on which other samples are drawn with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sid_ray.toys.digits_data import NUM_DIGITS, digit_prompt

#: a fixed, varied set for real teachers (objects, scenes, text rendering, counting, styles)
TEXT_PROMPTS: tuple[str, ...] = (
    "a red apple on a wooden table",
    "a cat sleeping on a windowsill in the afternoon sun",
    "a lighthouse on a rocky coast at dusk",
    "a bowl of ramen with a soft-boiled egg, top view",
    "an astronaut riding a horse on the moon",
    "a street sign that says 'SLOW'",
    "three blue balloons against a cloudy sky",
    "a watercolor painting of a fox in a snowy forest",
    "a close-up photo of a hummingbird drinking from a flower",
    "a vintage bicycle leaning against a brick wall",
    "a cozy living room with a fireplace and a green sofa",
    "a mountain lake reflecting pine trees at sunrise",
    "a robot reading a book in a library",
    "a plate of sushi on a black slate",
    "an oil painting of a sailboat in a storm",
    "a child's drawing of a house with a yellow sun",
)
DEFAULT_SEED = 1234


@dataclass(frozen=True)
class PromptSet:
    """Prompts, the seed of each sample's noise, and (digits) the digit each prompt asks for."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    digits: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.seeds):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds")

    def __len__(self) -> int:
        return len(self.prompts)

    def noise(self, latent_shape: tuple[int, ...], start: int = 0, stop: int | None = None) -> torch.Tensor:
        """N(0, I) latents (n, *latent_shape) for samples start..stop, each from its own seed."""
        seeds = self.seeds[start:stop]
        return torch.stack(
            [torch.randn(latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )

    def slice(self, start: int, stop: int) -> PromptSet:
        digits = self.digits[start:stop] if self.digits is not None else None
        return PromptSet(self.prompts[start:stop], self.seeds[start:stop], digits)


def digits_prompt_set(num_samples: int = 1000, seed: int = DEFAULT_SEED) -> PromptSet:
    """Digits 0..9 in turn ("a handwritten zero", "... one", ...), seeds seed, seed + 1, ..."""
    digits = tuple(i % NUM_DIGITS for i in range(num_samples))
    return PromptSet(
        tuple(digit_prompt(d) for d in digits), tuple(seed + i for i in range(num_samples)), digits
    )


def text_prompt_set(num_samples: int = 1000, seed: int = DEFAULT_SEED) -> PromptSet:
    """`TEXT_PROMPTS` in turn, seeds seed, seed + 1, ... (real teachers)."""
    prompts = tuple(TEXT_PROMPTS[i % len(TEXT_PROMPTS)] for i in range(num_samples))
    return PromptSet(prompts, tuple(seed + i for i in range(num_samples)))
