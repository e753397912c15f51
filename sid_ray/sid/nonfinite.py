"""What a generator update does with samples that hold a NaN or an infinity.

A sample whose x_g, xT or xF holds a non-finite value is dropped from G's loss and counted; the
batch size B stays the full micro-batch, so the loss scale does not jump when a sample is dropped.
Dropped samples are zeroed with `torch.where` before the formula, never multiplied by a mask, so
that a NaN never reaches the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sid_ray.sid.losses import batch_loss, generator_loss


@dataclass
class GeneratorLoss:
    """The G loss and what was left out of it."""

    loss: torch.Tensor  # scalar, differentiable
    per_sample: torch.Tensor  # (B,) detached, NaN where dropped
    num_dropped: torch.Tensor  # () int64: samples whose x_g, xT or xF held a non-finite value


def finite_samples(*tensors: torch.Tensor) -> torch.Tensor:
    """(B,) True where every one of `tensors` is finite in that sample."""
    return torch.stack([torch.isfinite(x).flatten(1).all(dim=1) for x in tensors]).all(dim=0)


def generator_loss_without_nonfinite(
    x_g: torch.Tensor,
    x_teacher: torch.Tensor,
    x_fake: torch.Tensor,
    weight: torch.Tensor,
    alpha: float,
    scale: float,
) -> GeneratorLoss:
    """`scale` x the batch mean of `generator_loss` over the finite samples (see the module)."""
    finite = finite_samples(x_g, x_teacher, x_fake)
    keep = finite.view(-1, *([1] * (x_g.ndim - 1)))

    def kept(x: torch.Tensor) -> torch.Tensor:
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))

    per_sample = generator_loss(kept(x_g), kept(x_teacher), kept(x_fake), kept(weight.expand_as(x_g)), alpha)
    shown = torch.where(finite, per_sample.detach(), torch.full_like(per_sample, float("nan")))
    return GeneratorLoss(batch_loss(per_sample, scale), shown, (~finite).sum())
