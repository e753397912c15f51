"""Learning-rate schedules in kimg."""

import math

import pytest
import torch

from sid_ray.config import OptimConfig
from sid_ray.train.lr_schedule import lr_factor, set_lr


def test_constant_and_cosine_factors():
    assert lr_factor(OptimConfig(), 5.0, 10.0) == 1.0
    cosine = OptimConfig(lr_schedule="cosine", final_lr_fraction=0.1)
    assert lr_factor(cosine, 0.0, 10.0) == 1.0
    assert lr_factor(cosine, 10.0, 10.0) == pytest.approx(0.1)
    assert lr_factor(cosine, 5.0, 10.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cosine, 2.5, 10.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(cosine, 20.0, 10.0) == pytest.approx(0.1)  # past the end: stays at the floor


def test_set_lr_changes_every_group():
    opt = torch.optim.Adam(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}],
        lr=1.0,
    )
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
