"""Sampling a flow model (the teacher baselines the student is compared with).

Euler integrates the probability-flow ODE; ancestral sampling discretises the reverse SDE. For an
exact teacher both tend to the same distribution as the steps grow; for a learned one they need
not, and SiD, which matches the teacher's scores, is closer to what the scores define.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sid_ray.sid.flow import x0_from_velocity


def uniform_times(num_steps: int) -> list[float]:
    """1 = t_0 > t_1 > ... > t_N = 0, evenly spaced."""
    return [1.0 - i / num_steps for i in range(num_steps + 1)]


@torch.no_grad()
def euler_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    times: Sequence[float],
) -> torch.Tensor:
    """Integrate dx/dt = v from t = times[0] (noise z) down to times[-1] with Euler steps."""
    x = z
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        t_vec = torch.full((z.shape[0],), t_now, device=z.device, dtype=z.dtype)
        x = x + (t_next - t_now) * velocity(x, t_vec)
    return x


@torch.no_grad()
def ancestral_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    times: Sequence[float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM-style ancestral sampling of x_t = (1 - t) x0 + t eps from t = times[0] (noise z).

    From t to s < t, x_s is drawn from q(x_s | x_t, x0 = x0_hat), the Gaussian posterior of the
    interpolation (alpha_t = 1 - t, sigma_t = t), with x0_hat = x_t - t v; the last step (s = 0)
    returns x0_hat. With alpha_ts = alpha_t / alpha_s and var_ts = sigma_t^2 - alpha_ts^2 sigma_s^2:
    mean = alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s var_ts / sigma_t^2 x0_hat and
    variance = var_ts sigma_s^2 / sigma_t^2. From t = 1 this is SiD's roll-out step (SID.md 3).
    """
    x = z
    for t, s in zip(times[:-1], times[1:], strict=True):
        t_vec = torch.full((z.shape[0],), t, device=z.device, dtype=z.dtype)
        x0_hat = x0_from_velocity(x, t, velocity(x, t_vec))
        if s <= 0:
            return x0_hat
        alpha_ts = (1 - t) / (1 - s)
        var_ts = t**2 - alpha_ts**2 * s**2
        mean = (alpha_ts * s**2 / t**2) * x + ((1 - s) * var_ts / t**2) * x0_hat
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        x = mean + (var_ts * s**2 / t**2) ** 0.5 * noise
    return x
