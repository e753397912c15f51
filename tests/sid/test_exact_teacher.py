"""The exact Gaussian-mixture teacher: closed-form velocity vs a Monte-Carlo estimate."""

import torch

from sid_ray.toys.gaussian_mixture import ExactMixtureTeacher, label_conditioning, ring_mixture


def _monte_carlo_velocity(mixture, x_t, t, label, n=400_000, seed=0):
    """E[eps - x0 | x_t, c] by self-normalised importance sampling over x0 ~ p(x0 | c):
    weights N(x_t; (1 - t) x0, t^2 I), and eps = (x_t - (1 - t) x0) / t."""
    g = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(torch.full((n,), label), generator=g)
    log_w = -0.5 * ((x_t - (1 - t) * x0) ** 2).sum(1) / t**2
    w = torch.softmax(log_w, dim=0)[:, None]
    eps = (x_t - (1 - t) * x0) / t
    return (w * (eps - x0)).sum(0)


def test_closed_form_velocity_matches_monte_carlo():
    mixture = ring_mixture()
    points = [
        (torch.tensor([0.3, -0.2]), 0.9, 8),  # near noise, null condition
        (torch.tensor([1.0, 0.8]), 0.5, 1),
        (torch.tensor([-1.5, 0.2]), 0.4, 8),
        (torch.tensor([1.2, -1.1]), 0.3, 7),
    ]
    for x_t, t, label in points:
        x_t = x_t.double()
        exact = mixture.velocity(x_t[None], torch.tensor([t], dtype=torch.float64), torch.tensor([label]))[0]
        estimate = _monte_carlo_velocity(mixture, x_t, t, label)
        assert torch.allclose(exact, estimate, atol=0.03), (x_t, t, label, exact, estimate)


def test_null_condition_is_the_marginal_and_classes_prefer_their_mode():
    mixture = ring_mixture()
    torch.testing.assert_close(
        mixture.weights(torch.tensor([8]))[0], mixture.class_prior @ mixture.class_weights
    )
    w = mixture.weights(torch.arange(8))
    assert torch.equal(w.argmax(dim=1), torch.arange(8))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(8, dtype=torch.float64))


def test_teacher_velocity_through_the_model_interface_and_dtypes():
    teacher = ExactMixtureTeacher(ring_mixture())
    x = torch.randn(4, 2)
    t = torch.rand(4)
    cond = label_conditioning(torch.tensor([0, 3, 8, 5]), 8)
    v = teacher.guided_velocity(x, t, cond, 1.0)
    assert v.dtype == torch.float32 and v.shape == (4, 2)
    v64 = teacher.mixture.velocity(x.double(), t.double(), cond.tensors["label"])
    torch.testing.assert_close(v, v64.float())


def test_generated_teacher_velocity_matches_monte_carlo():
    """The closed form holds for the generated family too: 5-D, unequal scales, class structure."""
    from sid_ray.toys.mixture_family import PRESETS, generated_mixture

    mixture = generated_mixture(PRESETS["gmm-d5"])
    g = torch.Generator().manual_seed(3)
    for t, label in ((0.8, mixture.num_classes), (0.6, 0), (0.5, 1)):
        x0 = mixture.sample(torch.tensor([label]), generator=g)[0]
        x_t = (1 - t) * x0 + t * torch.randn(mixture.dim, generator=g, dtype=torch.float64)
        exact = mixture.velocity(x_t[None], torch.tensor([t], dtype=torch.float64), torch.tensor([label]))[0]
        estimate = _monte_carlo_velocity(mixture, x_t, t, label)
        assert torch.allclose(exact, estimate, atol=0.05), (t, label, exact, estimate)
