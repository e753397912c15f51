"""Deterministic Euler sampling of a flow model (the teacher baseline the student is compared with)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


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
