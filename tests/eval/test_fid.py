"""FID: torchmetrics' value against a float64 reference written here, and the extractors' errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch

from sid_ray.config.schema import ConfigError
from sid_ray.eval.fid import FeatureFID, InceptionFeatures, PassThroughFeatures, frechet_distance_of_features


def reference_frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), float64, via scipy's matrix square root."""
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)  # imaginary parts are round-off
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def correlated_features(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    return torch.randn(n, dim, generator=g, dtype=torch.float64) @ mixing + 0.3


def test_identical_feature_sets_have_zero_fid() -> None:
    feats = correlated_features(500, 16, seed=0)
    assert abs(frechet_distance_of_features(feats, feats.clone())) < 1e-6


def test_fid_grows_with_shift_and_matches_float64_reference() -> None:
    real = correlated_features(600, 16, seed=1)
    fake_base = correlated_features(600, 16, seed=2)  # same law, other draw
    direction = torch.linspace(-1, 1, 16, dtype=torch.float64)
    values = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        fake = fake_base + shift * direction
        ours = frechet_distance_of_features(real, fake)
        reference = reference_frechet_distance(real.numpy(), fake.numpy())
        assert ours == pytest.approx(reference, rel=1e-6, abs=1e-8)
        values.append(ours)
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
    # a shift s along `direction` adds s^2 |direction|^2 to the mean term, nothing to the covariance term
    assert values[-1] - values[0] == pytest.approx(
        float(
            ((real.mean(0) - fake_base.mean(0) - 2 * direction) ** 2).sum()
            - ((real.mean(0) - fake_base.mean(0)) ** 2).sum()
        ),
        rel=1e-6,
    )


def test_fid_grows_with_a_scaled_covariance() -> None:
    real = correlated_features(800, 8, seed=3)
    values = [
        frechet_distance_of_features(real, real.mean(0) + s * (real - real.mean(0))) for s in (1, 1.5, 3)
    ]
    assert values[0] < 1e-6 < values[1] < values[2]
    for s, v in zip((1.5, 3), values[1:], strict=True):
        fake = real.mean(0) + s * (real - real.mean(0))
        assert v == pytest.approx(reference_frechet_distance(real.numpy(), fake.numpy()), rel=1e-6)


def test_feature_fid_keeps_real_statistics_across_generated_sets() -> None:
    features = PassThroughFeatures(12)  # 3x2x2 "images": few enough dimensions for 40 samples
    fid = FeatureFID(features, batch_size=7)  # batches that do not divide the set
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 2, 2, generator=g, dtype=torch.float64)
    other = torch.rand(50, 3, 2, 2, generator=g, dtype=torch.float64) * 0.5
    fid.add_real(real)
    fid.add_fake(real)
    assert abs(fid.compute()) < 1e-3
    fid.reset_fake()
    fid.add_fake(other)
    assert fid.num_real == 40
    reference = reference_frechet_distance(features(real).double().numpy(), features(other).double().numpy())
    assert reference > 1e-2
    assert fid.compute() == pytest.approx(reference, rel=1e-6)


def test_inception_needs_a_local_weights_file(tmp_path) -> None:
    missing = tmp_path / "pt_inception.pth"
    with pytest.raises(ConfigError, match="no file at"):
        InceptionFeatures(missing)


def test_feature_fid_rejects_an_extractor_without_num_features() -> None:
    with pytest.raises(TypeError, match="num_features"):
        FeatureFID(torch.nn.Identity())


def test_inception_names_the_missing_package(tmp_path, monkeypatch) -> None:
    find_spec = importlib.util.find_spec  # the project installs torch-fidelity: hide it
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torch_fidelity" else find_spec(n, *a)
    )
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="torch-fidelity"):
        InceptionFeatures(weights)
