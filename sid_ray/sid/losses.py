"""The two SiD losses for flow-matching teachers (shared/SID.md section 4), per sample.

Each loss is its formula and nothing else, read side by side with SID.md: it returns one value
per sample, (B,). The reduction (a scale times the sum over the micro-batch divided by its size
B: averaged over ranks and accumulation steps this is the sum over the global batch divided by
the global batch) and the non-finite policy are the caller's (`sid_ray.sid.nonfinite`,
`sid_ray.sid.step`), as in EDM's `training/loss.py`.
"""

from __future__ import annotations

import torch

from sid_ray.sid.flow import velocity_target


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    # bf16 networks, fp32 loss arithmetic; float64 (exactness tests) stays float64
    return x.to(torch.promote_types(x.dtype, torch.float32))


def sum_per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1)


def fake_score_loss(v_fake: torch.Tensor, x_g: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """L_F = sum (CFG_k1[v_F](x_t, t, c) - (eps - x_g))^2 per sample, no t-weighting (SID.md 4).

    `v_fake` is the fake network's guided velocity at x_t = (1 - t) x_g + t eps; x_g carries no
    gradient here.
    """
    residual = at_least_fp32(v_fake) - at_least_fp32(velocity_target(x_g, eps))
    return sum_per_sample(residual**2)


def generator_loss(
    x_g: torch.Tensor, x_teacher: torch.Tensor, x_fake: torch.Tensor, weight: torch.Tensor, alpha: float
) -> torch.Tensor:
    """L_G = sum (xT - xF) * ((xT - x_g) - alpha (xT - xF)) * w(t) per sample (SID.md 4).

    x_teacher = x_t - t CFG_k4[v_T], x_fake = x_t - t CFG_k2[v_F]; the gradient reaches the
    generator through x_g and, via x_t, through both networks' inputs.
    """
    x_g, x_teacher, x_fake = (at_least_fp32(x) for x in (x_g, x_teacher, x_fake))
    diff = x_teacher - x_fake
    return sum_per_sample(diff * ((x_teacher - x_g) - alpha * diff) * weight.to(diff.dtype))


def batch_loss(per_sample: torch.Tensor, scale: float) -> torch.Tensor:
    """scale / B * sum over the micro-batch: the loss one micro-batch back-propagates."""
    return scale * per_sample.sum() / per_sample.shape[0]
