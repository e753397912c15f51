"""Sample-quality measures for the exact Gaussian-mixture teacher (low-dimensional toys)."""

from __future__ import annotations

import torch

from sid_ray.toys.gaussian_mixture import GaussianMixture


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The (squared) energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'|, V-statistic, float64."""
    x, y = x.double(), y.double()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)


def mode_masses(
    samples: torch.Tensor, mixture: GaussianMixture, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Each component's mass in `samples` (M,): the mean posterior responsibility p(m | x, c)
    under the true mixture (c = `labels`, default the null condition, i.e. the marginal).

    On exact samples its expectation is the component's weight however wide or overlapping the
    modes are; the nearest-mean count is not (it hands a wide mode's tails to its neighbours)."""
    return mixture.responsibilities(samples.to(mixture.means.dtype), labels).mean(dim=0)


def worst_relative_mass_error(
    samples: torch.Tensor, mixture: GaussianMixture, weights: torch.Tensor
) -> float:
    """max_m |mass_m - w_m| / w_m: 0.25 means some mode is off by 25% of its true weight."""
    masses = mode_masses(samples, mixture)
    return float(((masses - weights.double()).abs() / weights.double()).max())


def per_step_samples(
    generator, num_steps: int, cond, dim: int, seed: int, time_shift: float = 1.0
) -> list[torch.Tensor]:
    """The k-step outputs of a K = `num_steps` generator for every k = 1..K, from the same seeded
    noise: what each intermediate step of the few-step roll-out gives (SID.md 3)."""
    return [
        _rollout_samples(generator, k, num_steps, cond, dim, seed, time_shift)
        for k in range(1, num_steps + 1)
    ]


def generator_samples(
    generator, num_steps: int, cond, dim: int, seed: int, time_shift: float = 1.0
) -> torch.Tensor:
    """K-step SiD roll-out of a (toy) generator from seeded noise, no CFG (SID.md 3, 5), at the
    roll-out times shifted by `time_shift` (the run's `sid.rollout_time_shift`)."""
    return _rollout_samples(generator, num_steps, num_steps, cond, dim, seed, time_shift)


def _rollout_samples(
    generator, k: int, num_steps: int, cond, dim: int, seed: int, time_shift: float
) -> torch.Tensor:
    from sid_ray.sid.rollout import rollout

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cond.batch_size, dim, generator=g)
    with torch.no_grad():
        return rollout(
            lambda x, t: generator.guided_velocity(x, t, cond, 1.0),
            z,
            k,
            num_steps,
            "fresh",
            g,
            time_shift=time_shift,
        )


def teacher_euler_samples(
    teacher, steps: int, cond, dim: int, seed: int, guidance: float = 1.0
) -> torch.Tensor:
    """The exact teacher integrated with `steps` uniform Euler steps, in float64."""
    from sid_ray.sid.sampling import euler_sample, uniform_times

    return _teacher_samples(
        lambda velocity, z, g: euler_sample(velocity, z, uniform_times(steps)),
        teacher,
        cond,
        dim,
        seed,
        guidance,
    )


def teacher_ancestral_samples(
    teacher, steps: int, cond, dim: int, seed: int, guidance: float = 1.0
) -> torch.Tensor:
    """The exact teacher sampled with `steps` uniform ancestral (reverse-SDE) steps, in float64;
    the step noise continues the seeded generator that drew z."""
    from sid_ray.sid.sampling import ancestral_sample, uniform_times

    return _teacher_samples(
        lambda velocity, z, g: ancestral_sample(velocity, z, uniform_times(steps), g),
        teacher,
        cond,
        dim,
        seed,
        guidance,
    )


def _teacher_samples(sample, teacher, cond, dim: int, seed: int, guidance: float) -> torch.Tensor:
    """`sample(velocity, z, generator)` on the teacher's guided velocity from seeded float64 noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cond.batch_size, dim, generator=g, dtype=torch.float64)
    velocity = lambda x, t: teacher.guided_velocity(x, t, cond, guidance)  # noqa: E731
    return sample(velocity, z, g).float()
