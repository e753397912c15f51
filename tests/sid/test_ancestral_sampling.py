"""The ancestral (reverse-SDE) sampler: its posterior step, and its limit on the exact teacher."""

import torch

from benchmarks.toy_gmm import toy_config
from sid_ray.eval.toy_metrics import energy_distance, teacher_ancestral_samples
from sid_ray.models.registry import build_adapter
from sid_ray.sid.sampling import ancestral_sample
from sid_ray.toys.gaussian_mixture import label_conditioning

SAMPLES = 2000


def test_first_step_from_pure_noise_is_the_sid_rollout_step():
    # from t = 1 the posterior ignores x_t: x_s = (1 - s) x0_hat + s * fresh noise (SID.md 3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    velocity = lambda x, t: 0.5 * x + t.view(-1, 1)  # noqa: E731  any field will do
    x_s = ancestral_sample(velocity, z, [1.0, 0.75], torch.Generator().manual_seed(1))
    x0_hat = z - velocity(z, torch.ones(5, dtype=torch.float64))
    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(x_s, 0.25 * x0_hat + 0.75 * noise)


def test_last_step_returns_the_denoised_estimate_without_noise():
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    velocity = lambda x, t: x * t.view(-1, 1)  # noqa: E731
    x0 = ancestral_sample(velocity, z, [0.5, 0.0], torch.Generator().manual_seed(1))
    torch.testing.assert_close(x0, z - 0.5 * velocity(z, torch.full((4,), 0.5, dtype=torch.float64)))


def test_exact_teacher_ancestral_samples_tend_to_the_true_mixture():
    adapter = build_adapter(toy_config(4, 1.0))
    null = label_conditioning(torch.full((SAMPLES,), 8), 8)
    truth = adapter.mixture.sample(torch.full((SAMPLES,), 8), torch.Generator().manual_seed(99)).float()

    def distance(steps: int) -> float:
        return energy_distance(teacher_ancestral_samples(adapter.teacher, steps, null, 2, seed=1), truth)

    coarse, fine = distance(4), distance(256)
    # measured: 0.024 at 4 steps, 0.0011 at 256, against a two-sample floor of 0.0005
    assert fine < 0.003
    assert fine < 0.1 * coarse
