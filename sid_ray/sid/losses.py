"""The two SiD losses for flow-matching teachers (shared/SID.md section 4), on plain tensors.

Both are sums over elements divided by the (micro-)batch size B: averaged over ranks and
accumulation steps this is the sum over the global batch divided by the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sid_ray.sid.flow import velocity_target


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    # bf16 networks, fp32 loss arithmetic; float64 (exactness tests) stays float64
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _sum_per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1)


def fake_score_loss(
    v_fake: torch.Tensor, x_g: torch.Tensor, eps: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """L_F = ls / B * sum (CFG_k1[v_F](x_t, t, c) - (eps - x_g))^2, no t-weighting (SID.md 4).

    `v_fake` is the fake network's guided velocity at x_t = (1 - t) x_g + t eps; x_g carries no
    gradient here.
    """
    residual = _at_least_fp32(v_fake) - _at_least_fp32(velocity_target(x_g, eps))
    return scale * _sum_per_sample(residual**2).sum() / x_g.shape[0]


@dataclass
class GeneratorLoss:
    """The G loss and what was left out of it."""

    loss: torch.Tensor  # scalar, differentiable
    per_sample: torch.Tensor  # (B,) detached, NaN where dropped
    num_dropped: torch.Tensor  # () int64: samples whose x_g, xT or xF held a non-finite value


def generator_loss(
    x_g: torch.Tensor,
    x_teacher: torch.Tensor,
    x_fake: torch.Tensor,
    weight: torch.Tensor,
    alpha: float = 1.0,
    scale: float = 100.0,
) -> GeneratorLoss:
    """L_G = lsg / B * sum (xT - xF) * ((xT - x_g) - alpha (xT - xF)) * w(t) (SID.md 4).

    x_teacher = x_t - t CFG_k4[v_T], x_fake = x_t - t CFG_k2[v_F]; the gradient reaches the
    generator through x_g and, via x_t, through both networks' inputs. Samples with a non-finite
    value in x_g, xT or xF are dropped from the sum (and counted); B stays the full batch size so
    the loss scale does not jump when a sample is dropped.
    """
    x_g, x_teacher, x_fake = (_at_least_fp32(x) for x in (x_g, x_teacher, x_fake))
    finite = torch.stack([torch.isfinite(x).flatten(1).all(dim=1) for x in (x_g, x_teacher, x_fake)]).all(
        dim=0
    )
    keep = finite.view(-1, *([1] * (x_g.ndim - 1)))
    zero = torch.zeros((), dtype=x_g.dtype, device=x_g.device)
    # torch.where (not multiplication by a mask) so that a NaN never reaches the gradient
    diff = torch.where(keep, x_teacher - x_fake, zero)
    to_teacher = torch.where(keep, x_teacher - x_g, zero)
    w = torch.where(keep, weight.to(diff.dtype).expand_as(diff), zero)
    per_sample = _sum_per_sample(diff * (to_teacher - alpha * diff) * w)
    loss = scale * per_sample.sum() / x_g.shape[0]
    shown = torch.where(finite, per_sample.detach(), torch.full_like(per_sample, float("nan")))
    return GeneratorLoss(loss=loss, per_sample=shown, num_dropped=(~finite).sum())
