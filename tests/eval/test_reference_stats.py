"""FID against a reference-statistics file equals torchmetrics' FID of the same two feature sets."""

from __future__ import annotations

import pytest
import torch

from sid_ray.config.schema import ConfigError
from sid_ray.eval.fid import frechet_distance_of_features
from sid_ray.eval.reference_stats import ReferenceStats, fid_against


def _features(seed: int, n: int, shift: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g).double()
        + shift
    )


def test_fid_from_saved_statistics_equals_fid_from_features(tmp_path):
    real, fake = _features(0, 400, 0.0), _features(1, 300, 0.3)
    path = ReferenceStats.of_features(real, "test-features").save(tmp_path / "ref.safetensors")
    loaded = ReferenceStats.load(path)
    assert loaded.num == 400 and loaded.features == "test-features"
    direct = frechet_distance_of_features(real, fake)  # torchmetrics fed both feature sets
    assert direct > 0.1
    assert fid_against(loaded, fake) == pytest.approx(direct, rel=1e-9)
    assert fid_against(loaded, real) == pytest.approx(0.0, abs=1e-6)


def test_missing_statistics_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="--reference-stats"):
        ReferenceStats.load(tmp_path / "nope.safetensors")


def test_width_mismatch_is_refused():
    stats = ReferenceStats.of_features(_features(0, 50, 0.0))
    with pytest.raises(ValueError, match="width"):
        fid_against(stats, torch.zeros(10, 5))
