"""`model.init = "random"`: a teacher of the released size with random weights, no download.

What it is for: throughput and memory benchmarks and full-size GPU tests (benchmarks/sid_step.py,
tests marked `gpu`), where real weights cannot be downloaded and would not change a timing. The
transformer is the released architecture (`DiTAdapter.released_transformer_config`); the text
encoders and the VAE are tiny ones whose output widths match what the transformer consumes (FLUX:
CLIP pooled 768, T5 4096 x 512 tokens), built by each family's `random_parts`.

The transformer is built directly on torch's default device and in the run's dtype (the Ray
worker builds its networks under `torch.device(<its GPU>)`): FLUX.1-dev then takes seconds and
24 GB, where building it in fp32 on the CPU and casting would take minutes and 72 GB. The tiny
parts are built on the CPU from the same fixed seed (`tiny_parts`), so that every process that
builds them (each rank, an embedding actor, the export) holds the same text encoders: a cached
embedding then equals what a worker would encode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

# the weights of every rank must agree (the shared base is replicated): one fixed seed
RANDOM_WEIGHTS_SEED = 0

T = TypeVar("T")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_transformer(cls: type, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """`cls` built from `config` on torch's default device, in `dtype`, with the class's own init."""
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    with default_dtype(dtype):
        return cls.from_config(config).eval()


def tiny_parts(build: Callable[[], T]) -> T:
    """`build()` on the CPU from `RANDOM_WEIGHTS_SEED`, the caller's CPU random state left as it
    was: the same tiny parts in every process, whatever device or random state it builds them in.
    (The tiny builders seed CUDA's generators too, as `random_transformer` does right after.)"""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return build()
