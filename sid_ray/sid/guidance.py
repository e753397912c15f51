"""Classifier-free guidance (shared/SID.md section 5) and the model interface the losses use.

The losses never see model details. They call `model.guided_velocity(x_t, t, cond, scale)`,
which every adapter implements: text-conditioned DiTs with `classifier_free_guidance` below
(two passes), FLUX.1-dev with its guidance embedding (one pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Conditioning(Protocol):
    """What a model is conditioned on (prompt embeddings, class labels, ...) for a batch."""

    def unconditional(self) -> Conditioning:
        """The same batch with the null condition (empty prompt / null class)."""

    def with_unconditional(self) -> Conditioning:
        """A batch of 2B: this batch, then its unconditional twin, for one batched CFG pass."""

    def doubled(self) -> Conditioning:
        """A batch of 2B: this batch twice (the data-aided F pass on fakes and reals together)."""


@runtime_checkable
class VelocityModel(Protocol):
    """A flow network as the SiD losses see it."""

    def guided_velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> torch.Tensor:
        """CFG_scale[v](x_t, t, cond); scale = 1 is the conditional pass, 0 the unconditional."""


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """CFG_k(v) = v_uncond + k (v_cond - v_uncond) (SID.md 5)."""
    return v_uncond + scale * (v_cond - v_uncond)


def classifier_free_guidance(
    velocity: Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor],
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    scale: float,
) -> torch.Tensor:
    """Two-pass CFG around a single-pass `velocity(x_t, t, cond)`.

    scale = 1 costs one conditional pass and scale = 0 one unconditional pass (Zero-CFG's fake
    network); any other scale, negative ones (Anti-CFG) included, one pass on a doubled batch.
    """
    if scale == 1:
        return velocity(x_t, t, cond)
    if scale == 0:
        return velocity(x_t, t, cond.unconditional())
    both = velocity(torch.cat([x_t, x_t]), torch.cat([t, t]), cond.with_unconditional())
    v_cond, v_uncond = both.chunk(2)
    return cfg_combine(v_cond, v_uncond, scale)
