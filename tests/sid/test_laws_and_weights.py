"""SID.md section 4: the loss-time laws and every weighting scheme against their formulas."""

import math

import pytest
import torch

from sid_ray.sid import WEIGHTINGS, LogitNormal, Uniform, loss_weight, make_time_law


def test_logit_normal_default_has_median_two_thirds_and_matches_its_density():
    law = make_time_law("logit_normal")
    assert law == LogitNormal(mean=math.log(2), std=1.6)
    t = law.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    assert abs(t.median().item() - 2 / 3) < 0.005
    # histogram vs density
    edges = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        empirical = ((t >= lo) & (t < hi)).double().mean().item()
        grid = torch.linspace(lo, hi, 201, dtype=torch.float64)
        expected = torch.trapezoid(law.density(grid), grid).item()
        assert abs(empirical - expected) < 0.004, (lo, hi, empirical, expected)


def test_logit_normal_is_configurable():
    law = make_time_law("logit_normal", mean=0.0, std=1.0)
    t = law.sample(100_000, generator=torch.Generator().manual_seed(1)).double()
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item()) < 0.02 and abs(logit.std().item() - 1.0) < 0.02


def test_uniform_law_range():
    t = Uniform(0.1, 0.2).sample(10_000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0.1 and t.max() <= 0.2
    with pytest.raises(ValueError, match="valid"):
        make_time_law("lognormal")


FORMULAS = {
    "1-t": lambda t: 1 - t,
    "(1-t)^2": lambda t: (1 - t) ** 2,
    "1/t": lambda t: 1 / max(t, 1e-5),
    "1/t^2": lambda t: 1 / max(t * t, 1e-5),
    "(1-t)/t": lambda t: (1 - t) / max(t, 1e-5),
    "((1-t)/t)^2": lambda t: ((1 - t) / max(t, 1e-5)) ** 2,
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_time_weightings_match_their_formulas(name):
    ts = [1e-7, 1e-3, 0.1, 0.5, 0.9, 0.999]
    t = torch.tensor(ts, dtype=torch.float32)
    x = torch.zeros(len(ts), 2, 3)
    w = loss_weight(name, t, x_g=x)
    assert w.shape == (len(ts), 1, 1)
    expected = torch.tensor([FORMULAS[name](s) for s in ts], dtype=torch.float32)
    # float32 arithmetic: 1 - 0.999 carries a relative error near 1e-5
    torch.testing.assert_close(w.flatten(), expected, rtol=1e-4, atol=0)


def test_legacy_weighting_and_no_gradient():
    x_g = torch.randn(4, 3, 5, requires_grad=True)
    x_teacher = x_g.detach() + torch.tensor([0.5, 1.0, 2.0, 0.0]).view(4, 1, 1)
    w = loss_weight("1/mean|x_g-xT|", torch.rand(4), x_g=x_g, x_teacher=x_teacher)
    torch.testing.assert_close(w.flatten(), torch.tensor([2.0, 1.0, 0.5, 1e5]))
    assert not w.requires_grad
    assert set(WEIGHTINGS) == set(FORMULAS) | {"1/mean|x_g-xT|"}
    with pytest.raises(ValueError, match="valid"):
        loss_weight("1-t^2", torch.rand(2))
