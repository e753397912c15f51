"""`TrainedNetwork` for a plain torch module and optimiser (single process, tests, the toy runs)."""

from __future__ import annotations

import contextlib

import torch

from sid_ray.sid.gradients import GradientSanitizer
from sid_ray.sid.step import parameters_frozen


class TorchTrainedNetwork:
    """A module, its Adam optimiser and gradient accumulation, as `distill_step` expects."""

    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        accumulation_steps: int = 1,
        grad_clip: float = 0.0,
    ):
        self.module = module
        self.optimizer = optimizer
        self.accumulation_steps = accumulation_steps
        self.grad_clip = grad_clip
        self.sanitizer = GradientSanitizer(module)
        self._micro_steps = 0

    def backward(self, loss: torch.Tensor) -> None:
        # divided by the accumulation count, as DeepSpeed's engine.backward does
        (loss / self.accumulation_steps).backward()

    def step(self) -> None:
        self._micro_steps += 1
        if self._micro_steps % self.accumulation_steps:
            return
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def frozen(self) -> contextlib.AbstractContextManager:
        return parameters_frozen(self.module)


def sid_adam(params, lr: float, betas=(0.0, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
    """Adam with SiD's betas (0, 0.999) by default (SID.md 7)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
