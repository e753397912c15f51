"""The generator loss's weighting w(t) (shared/SID.md section 4).

Every scheme is computed without gradient; any denominator is clipped at 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sid_ray.sid.flow import broadcast_time

DENOMINATOR_FLOOR = 1e-5


def _clip(d: torch.Tensor) -> torch.Tensor:
    return d.clamp_min(DENOMINATOR_FLOOR)


_TIME_WEIGHTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "1-t": lambda t: 1 - t,
    "(1-t)^2": lambda t: (1 - t) ** 2,
    "1/t": lambda t: 1 / _clip(t),
    "1/t^2": lambda t: 1 / _clip(t**2),
    "(1-t)/t": lambda t: (1 - t) / _clip(t),
    "((1-t)/t)^2": lambda t: ((1 - t) / _clip(t)) ** 2,
}
# The legacy SiD weighting normalises by the per-sample distance between the generated sample
# and the teacher's x0 estimate, as the original EDM-based SiD did.
LEGACY_WEIGHTING = "1/mean|x_g-xT|"
WEIGHTINGS = (*_TIME_WEIGHTS, LEGACY_WEIGHTING)


@torch.no_grad()
def loss_weight(
    name: str, t: torch.Tensor, x_g: torch.Tensor | None = None, x_teacher: torch.Tensor | None = None
) -> torch.Tensor:
    """w(t) of the named scheme, shaped to broadcast against x_g (B, 1, 1, ...)."""
    if name in _TIME_WEIGHTS:
        w = _TIME_WEIGHTS[name](t.to(torch.promote_types(t.dtype, torch.float32)))
        return broadcast_time(w, x_g) if x_g is not None else w
    if name == LEGACY_WEIGHTING:
        if x_g is None or x_teacher is None:
            raise ValueError(f"weighting {name!r} needs x_g and x_teacher")
        dims = tuple(range(1, x_g.ndim))
        diff = (x_g - x_teacher).abs()
        w = 1 / _clip(diff.to(torch.promote_types(diff.dtype, torch.float32)).mean(dim=dims))
        return broadcast_time(w, x_g)
    raise ValueError(f"unknown weighting {name!r}; valid: {list(WEIGHTINGS)}")
