"""Small label-conditioned MLP velocity networks: the fake-score and generator nets of the toys."""

from __future__ import annotations

import math

import torch
from torch import nn

from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t in (0, 1)."""

    def __init__(self, dim: int):
        super().__init__()
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None] * math.pi
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class LabelMLPVelocity(FlowModel):
    """v(x_t, t, label) for flat data x (B, D); label `num_classes` is the null condition."""

    def __init__(self, dim: int, num_classes: int, width: int = 256, depth: int = 4, time_dim: int = 64):
        super().__init__()
        self.time_embedding = TimeEmbedding(time_dim)
        self.label_embedding = nn.Embedding(num_classes + 1, time_dim)
        layers: list[nn.Module] = [nn.Linear(dim + 2 * time_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def velocity(self, x_t, t, cond: TensorConditioning):
        features = torch.cat(
            [
                x_t,
                self.time_embedding(t).to(x_t.dtype),
                self.label_embedding(cond.tensors["label"]).to(x_t.dtype),
            ],
            dim=1,
        )
        return self.net(features)
