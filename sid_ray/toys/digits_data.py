"""The digits world: scikit-learn's handwritten digits as images and prompts.

`sklearn.datasets.load_digits` ships 1,797 grey 8x8 digits (values 0..16) with the package, so
the toy teacher, its classifier and its evaluation need no download. The world's images are those
digits upsampled to `DIGITS_RESOLUTION` pixels, grey in three channels, in [0, 1] like every
adapter's `decode` output; the prompt of digit d is "a handwritten <word of d>".
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

#: Image side of the digits world. 16 = the 8x8 originals upsampled by 2: large enough to read in a
#: grid, and with a pixel-space latent packed 2x2 by FLUX it is 64 tokens, cheap on 2 CPU cores.
DIGITS_RESOLUTION = 16
NUM_DIGITS = 10
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_PROMPT = re.compile(r"^\s*an?\s+handwritten\s+(\w+)\s*$", re.IGNORECASE)


def digit_prompt(digit: int) -> str:
    """The prompt of a digit: 7 -> "a handwritten seven"."""
    return f"a handwritten {DIGIT_WORDS[digit]}"


def digit_of_prompt(prompt: str) -> int:
    """The digit a prompt asks for; a ValueError names the accepted form otherwise."""
    match = _PROMPT.match(prompt)
    word = match.group(1).lower() if match else ""
    if word not in DIGIT_WORDS:
        raise ValueError(f"prompt {prompt!r} names no digit: use 'a handwritten <zero..nine>'")
    return DIGIT_WORDS.index(word)


def to_world_images(digits_8x8: torch.Tensor, resolution: int = DIGITS_RESOLUTION) -> torch.Tensor:
    """(N, 8, 8) grey values in [0, 1] -> (N, 3, R, R) images in [0, 1].

    Bilinear upsampling (not nearest) so the world's digits have soft strokes, like the
    generators' outputs will; clamped because bilinear can overshoot nowhere here but [0, 1] is
    the contract of every image in sid_ray.
    """
    x = digits_8x8.float().unsqueeze(1)
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def load_digit_images(resolution: int = DIGITS_RESOLUTION) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as world images (N, 3, R, R) in [0, 1] and their labels (N,), in sklearn's order."""
    from sklearn.datasets import load_digits

    data = load_digits()
    grey = torch.from_numpy(data.images).float() / 16.0  # sklearn's values are 0..16
    return to_world_images(grey, resolution), torch.from_numpy(data.target).long()


def train_test_split_indices(num: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of range(num): (train indices, test indices)."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    num_test = int(round(num * test_fraction))
    return order[num_test:], order[:num_test]
