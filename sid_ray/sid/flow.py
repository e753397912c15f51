"""Rectified-flow interpolation and the three equivalent predictions (shared/SID.md section 1).

Time t in (0, 1), t = 1 is pure noise:  x_t = (1 - t) * x0 + t * eps,  v = eps - x0.
Every function takes t as a tensor of shape (B,) (or a scalar) and broadcasts it over the
remaining dimensions of x.
"""

from __future__ import annotations

import torch


def broadcast_time(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Shape t (B,) or scalar as (B, 1, 1, ...) so that it multiplies a tensor shaped like `like`."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1)))


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps (SID.md 1)."""
    tb = broadcast_time(t, x0)
    return (1 - tb) * x0 + tb * eps


def x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """Tweedie's x0 estimate from a velocity: x0_hat = x_t - t v (SID.md 1)."""
    return x_t - broadcast_time(t, x_t) * v


def eps_from_velocity(x_t: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """The noise estimate from a velocity: eps_hat = x_t + (1 - t) v (SID.md 1)."""
    return x_t + (1 - broadcast_time(t, x_t)) * v


def velocity_from_x0(x_t: torch.Tensor, t: torch.Tensor | float, x0: torch.Tensor) -> torch.Tensor:
    """Inverse of `x0_from_velocity`: v = (x_t - x0) / t."""
    return (x_t - x0) / broadcast_time(t, x_t)


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target v = eps - x0 (SID.md 1)."""
    return eps - x0


def edm_sigma(t: torch.Tensor | float) -> torch.Tensor | float:
    """EDM's noise level of the same point: sigma = t / (1 - t) (SID.md 1)."""
    return t / (1 - t)


def gaussian_noise(shape, generator: torch.Generator | None, device, dtype: torch.dtype) -> torch.Tensor:
    """N(0, I) drawn in at least fp32, then cast to `dtype`.

    A bf16 run thus sees the same noise numbers as an fp32 run with the same generator, and as
    stock diffusers schedulers, which draw their noise in fp32.
    """
    draw_dtype = torch.promote_types(dtype, torch.float32)
    return torch.randn(shape, generator=generator, device=device, dtype=draw_dtype).to(dtype)
