"""SID.md section 1: interpolation and the x0 / eps / v conversions."""

import torch

from sid_ray.sid import (
    edm_sigma,
    eps_from_velocity,
    interpolate,
    velocity_from_x0,
    velocity_target,
    x0_from_velocity,
)


def _sample(shape=(5, 3, 4, 4)):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape[0], generator=g, dtype=torch.float64).clamp(0.01, 0.99)
    return x0, eps, t


def test_true_velocity_recovers_x0_and_eps():
    x0, eps, t = _sample()
    x_t = interpolate(x0, eps, t)
    v = velocity_target(x0, eps)
    torch.testing.assert_close(x0_from_velocity(x_t, t, v), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(eps_from_velocity(x_t, t, v), eps, rtol=0, atol=1e-10)


def test_conversions_round_trip_for_any_velocity():
    x0, eps, t = _sample()
    x_t = interpolate(x0, eps, t)
    v = torch.randn_like(x_t)
    torch.testing.assert_close(velocity_from_x0(x_t, t, x0_from_velocity(x_t, t, v)), v, rtol=0, atol=1e-10)
    # x0_hat and eps_hat re-interpolate to x_t
    x0_hat, eps_hat = x0_from_velocity(x_t, t, v), eps_from_velocity(x_t, t, v)
    torch.testing.assert_close(interpolate(x0_hat, eps_hat, t), x_t, rtol=0, atol=1e-10)


def test_interpolation_endpoints_and_edm_sigma():
    x0, eps, _ = _sample()
    torch.testing.assert_close(interpolate(x0, eps, 0.0), x0)
    torch.testing.assert_close(interpolate(x0, eps, 1.0), eps)
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    torch.testing.assert_close(edm_sigma(t), torch.tensor([1 / 3, 1.0, 3.0], dtype=torch.float64))
    # x_t / (1 - t) = x0 + sigma * eps
    x_t = interpolate(x0[:3], eps[:3], t)
    s = edm_sigma(t).view(-1, 1, 1, 1)
    torch.testing.assert_close(x_t / (1 - t.view(-1, 1, 1, 1)), x0[:3] + s * eps[:3], rtol=0, atol=1e-10)
