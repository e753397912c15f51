"""Sample-quality measures for the exact Gaussian-mixture teacher (low-dimensional toys)."""

from __future__ import annotations

import torch

from sid_ray.models.gaussian_mixture import GaussianMixture


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The (squared) energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'|, V-statistic, float64."""
    x, y = x.double(), y.double()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)


def mode_masses(samples: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """Fraction of samples whose nearest mixture mean is each component (M,)."""
    nearest = mixture.nearest_component(samples)
    return torch.bincount(nearest, minlength=mixture.means.shape[0]).double() / samples.shape[0]


def worst_relative_mass_error(
    samples: torch.Tensor, mixture: GaussianMixture, weights: torch.Tensor
) -> float:
    """max_m |mass_m - w_m| / w_m: 0.25 means some mode is off by 25% of its true weight."""
    masses = mode_masses(samples, mixture)
    return float(((masses - weights.double()).abs() / weights.double()).max())
