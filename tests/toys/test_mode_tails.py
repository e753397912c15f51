"""benchmarks/toy_mode_tails.py: exact samples have no tails; bridging samples feed the wide mode."""

from __future__ import annotations

import torch

from benchmarks.toy_mode_tails import mode_tails, tail_report
from sid_ray.toys.mixture_family import PRESETS, generated_mixture


def _exact(mixture, n: int, seed: int) -> torch.Tensor:
    null = torch.full((n,), mixture.num_classes)
    return mixture.sample(null, torch.Generator().manual_seed(seed))


def test_exact_samples_have_the_true_masses_and_chi_square_distances() -> None:
    mixture = generated_mixture(PRESETS["gmm-d8"])
    tails = mode_tails(_exact(mixture, 32000, 0), mixture)
    assert tails["mass_error"].abs().max() < 0.06
    # chi-square(8) / 8: median 0.92, P(> 3) = 0.2%
    assert torch.allclose(tails["median_d2"], torch.full_like(tails["median_d2"], 0.92), atol=0.06)
    assert tails["beyond_3"].max() < 0.01


def test_samples_between_a_narrow_and_the_widest_mode_count_as_the_wide_modes_tail() -> None:
    mixture = generated_mixture(PRESETS["gmm-d8"])
    exact = _exact(mixture, 32000, 0)
    narrowest, widest = int(torch.argmin(mixture.stds)), int(torch.argmax(mixture.stds))
    noise = torch.randn(2000, mixture.dim, generator=torch.Generator().manual_seed(1))
    between = mixture.means[[narrowest, widest]].mean(0) + 0.02 * noise
    before, after = mode_tails(exact, mixture), mode_tails(torch.cat([exact, between]), mixture)
    # per sample of the union: the 2,000 midpoints are 1/17 of it
    share = 2000 / 34000
    widest_gain = after["far_mass"][widest] - before["far_mass"][widest] * (1 - share)
    assert widest_gain > 0.9 * share
    assert after["mass_error"][widest] > before["mass_error"][widest] + 0.5
    assert after["beyond_3"][widest] > 0.05
    assert "mass error per mode" in tail_report("midpoints", between, mixture)
