"""`GradientSanitizer`: non-finite gradients made finite, and a dropped gradient named."""

from __future__ import annotations

import pytest
import torch

from sid_ray.sid.gradients import INF_REPLACEMENT, GradientSanitizer


class DropWeightGradient(torch.autograd.Function):
    """x * w whose backward returns no gradient for w (what a faulty compiled graph did)."""

    @staticmethod
    def forward(ctx, x, w):
        return x * w

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def test_a_dropped_gradient_stops_the_backward_naming_the_parameter():
    layer = torch.nn.Linear(2, 2)
    GradientSanitizer(layer)
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="no gradient reached the trained parameter weight"):
        DropWeightGradient.apply(x, layer.weight).sum().backward()


def test_non_finite_gradients_become_finite_and_are_counted():
    layer = torch.nn.Linear(3, 1, bias=False)
    sanitizer = GradientSanitizer(layer)
    x = torch.tensor([[float("nan"), float("inf"), 1.0]])
    layer(x).sum().backward()
    assert layer.weight.grad.tolist() == [[0.0, INF_REPLACEMENT, 1.0]]
    assert int(sanitizer.pop_count()) == 2
