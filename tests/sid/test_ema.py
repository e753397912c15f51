"""The generator's weight EMA."""

import pytest
import torch

from sid_ray.train.ema import ParameterEMA


def test_ema_follows_the_half_life_and_swaps_in_and_out():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = ParameterEMA(layer, halflife_kimg=1.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(1000)  # one half-life: halfway from 0 to 1
    with ema.swapped_in():
        torch.testing.assert_close(layer.weight, torch.full((1, 2), 0.5))
    torch.testing.assert_close(layer.weight, torch.ones(1, 2))  # the trained weights are back
    ema.update(2000)  # two more half-lives: 1 - 0.5 * 0.25
    with ema.swapped_in():
        torch.testing.assert_close(layer.weight, torch.full((1, 2), 0.875))
    restored = ParameterEMA(layer, 1.0)
    restored.load_state_dict(ema.state_dict())
    with restored.swapped_in():
        torch.testing.assert_close(layer.weight, torch.full((1, 2), 0.875))
    with pytest.raises(ValueError, match="positive"):
        ParameterEMA(layer, 0.0)
