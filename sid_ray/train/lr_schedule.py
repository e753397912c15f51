"""Learning-rate schedules in images seen (kimg), applied to any optimiser's param groups.

Counting in kimg keeps a schedule independent of batch size (SID.md 7). Setting the groups' lr
directly works the same for torch optimisers and for DeepSpeed engines' optimisers.
"""

from __future__ import annotations

import math

from sid_ray.config.schema import OptimConfig


def lr_factor(optim: OptimConfig, kimg: float, total_kimg: float) -> float:
    """The multiplier of the base learning rate after `kimg` of `total_kimg`."""
    if optim.lr_schedule == "constant" or total_kimg <= 0:
        return 1.0
    progress = min(max(kimg / total_kimg, 0.0), 1.0)
    floor = optim.final_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
