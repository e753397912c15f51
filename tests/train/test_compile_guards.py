"""Compiled blocks must follow `requires_grad` flips of their parameters (the SiD step freezes F's
LoRA weights inside G's update and trains them in F's): a graph traced with frozen weights may
not serve a pass in which they train. torch 2.11 (the GPU image's) reused it and the gradient
never came (pytorch/pytorch#139476); `compile_blocks` turns on the guard that catches it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sid_ray.train.compile import compile_blocks


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.down, self.up = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.up(torch.relu(self.down(x)))


class _Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(_Block() for _ in range(3))

    def forward(self, x):
        for block in self.transformer_blocks:
            x = block(x)
        return x


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_a_parameter_unfrozen_after_a_frozen_pass_gets_its_gradient():
    torch.manual_seed(0)
    stack = _Stack()
    assert compile_blocks([stack], backend="aot_eager") == 3
    x = torch.randn(4, 8)
    stack.requires_grad_(False)
    stack(x).sum()  # traced with every weight frozen (like F inside G's update)
    trained = stack.transformer_blocks[1].up
    trained.requires_grad_(True)  # flipped in place, as the adapter switch does
    stack(x).sum().backward()
    assert trained.weight.grad is not None and trained.weight.grad.abs().sum() > 0
    expected = torch.autograd.grad(_eager(stack, x).sum(), trained.weight)[0]
    torch.testing.assert_close(trained.weight.grad, expected)


def _eager(stack: _Stack, x: torch.Tensor) -> torch.Tensor:
    """The same stack run through its blocks' sub-layers, which are not compiled."""
    for block in stack.transformer_blocks:
        x = block.up(torch.relu(block.down(x)))
    return x
