"""FID's InceptionV3 path for real teachers, on a randomly initialised InceptionV3 saved in the
format of the released weights file (torch-fidelity's pt_inception-2015-12-05-6726825d.pth: a
state dict of its `FeatureExtractorInceptionV3`), since the real file cannot be downloaded here.

`jobs/evaluate.py --reference-stats` is run as its docstring and the README tell a user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sid_ray.eval.fid import InceptionFeatures, frechet_distance_of_features
from sid_ray.eval.reference_stats import ReferenceStats, fid_against
from sid_ray.eval.stand_in_files import write_random_inception

ROOT = Path(__file__).resolve().parents[2]


def write_images(folder: Path, count: int, seed: int) -> torch.Tensor:
    """PNG files of smooth random colour fields; the same images as a (count, 3, 299, 299) tensor
    read back the way the job reads them."""
    from jobs.evaluate import image_files, iter_images

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(folder / f"{i:03d}.png")
    return torch.stack(list(iter_images(image_files(str(folder)))))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_random_inception(tmp_path_factory.mktemp("inception") / "pt_inception.pth", seed=0)


def test_inception_features_come_from_the_weights_file(weights, tmp_path):
    images = torch.rand(3, 3, 64, 64)
    features = InceptionFeatures(weights).eval()(images)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    assert features.std(dim=0).mean() > 1e-4  # images get different features (FID can tell sets apart)
    other = InceptionFeatures(write_random_inception(tmp_path / "other.pth", seed=1)).eval()(images)
    assert not torch.allclose(features, other)  # the file's weights are used, not a fixed init


def test_reference_stats_job_writes_the_features_mean_and_covariance(weights, tmp_path):
    real = write_images(tmp_path / "real", 12, seed=0)
    out = tmp_path / "stats" / "real.safetensors"
    job = subprocess.run(
        [
            sys.executable,
            "jobs/evaluate.py",
            "--reference-stats",
            str(out),
            "--images",
            str(tmp_path / "real"),
            "--inception-weights",
            str(weights),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "reference statistics of 12 images" in job.stdout
    stats = ReferenceStats.load(out)
    inception = InceptionFeatures(weights).eval()
    with torch.no_grad():
        features = inception(real).double()
    assert stats.num == 12 and stats.features == "inception:pt_inception.pth"
    torch.testing.assert_close(stats.mu, features.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.sigma, torch.cov(features.t()), rtol=1e-4, atol=1e-6)
    # FID against the file is torchmetrics' FID of the two feature sets
    with torch.no_grad():
        fake = inception(write_images(tmp_path / "fake", 10, seed=1)).double()
    expected = frechet_distance_of_features(features, fake)
    assert expected > 0 and fid_against(stats, fake) == pytest.approx(expected, rel=1e-4)
