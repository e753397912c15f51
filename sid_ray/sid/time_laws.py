"""Laws from which the loss time t is drawn (shared/SID.md section 4, "loss-time law").

A law is a named, configurable choice: `make_time_law(name, **params)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogitNormal:
    """t = sigmoid(n), n ~ N(mean, std^2). The SiD default is mean = log 2, std = 1.6 (median t = 2/3)."""

    mean: float = math.log(2.0)
    std: float = 1.6

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        n = torch.randn(batch, generator=generator, device=device, dtype=torch.float64)
        return torch.sigmoid(n * self.std + self.mean).float()

    def density(self, t: torch.Tensor) -> torch.Tensor:
        """p(t) = N(logit t; mean, std) / (t (1 - t)); used by tests to check the law."""
        logit = torch.log(t) - torch.log1p(-t)
        normal = torch.exp(-0.5 * ((logit - self.mean) / self.std) ** 2) / (self.std * math.sqrt(2 * math.pi))
        return normal / (t * (1 - t))


@dataclass(frozen=True)
class Uniform:
    """t ~ U(low, high); an alternative law for ablations."""

    low: float = 1e-3
    high: float = 1.0 - 1e-3

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=device)
        return self.low + (self.high - self.low) * u

    def density(self, t: torch.Tensor) -> torch.Tensor:
        inside = (t >= self.low) & (t <= self.high)
        return inside.to(t.dtype) / (self.high - self.low)


TIME_LAWS = {"logit_normal": LogitNormal, "uniform": Uniform}


def make_time_law(name: str, **params):
    """Build the law called `name` with its parameters; unknown names list the valid ones."""
    if name not in TIME_LAWS:
        raise ValueError(f"unknown time law {name!r}; valid: {sorted(TIME_LAWS)}")
    return TIME_LAWS[name](**params)
