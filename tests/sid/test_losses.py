"""SID.md section 4: the fake-score and generator losses, gradients and NaN handling."""

import torch

from sid_ray.sid import (
    MicroBatch,
    SiDNetworks,
    StepContext,
    fake_score_loss,
    generator_loss_without_nonfinite,
    make_time_law,
)
from sid_ray.sid.gradients import GradientSanitizer
from sid_ray.sid.step import generator_update, noise_generator, parameters_frozen
from sid_ray.toys.gaussian_mixture import ExactMixtureTeacher, label_conditioning, ring_mixture
from sid_ray.toys.mlp import LabelMLPVelocity
from tests.sid.networks import sid_settings

B = 6


class PointGenerator(torch.nn.Module):
    """v(x, t) = x - p: a one-step roll-out from t = 1 gives x_g = x_1 - (x_1 - p) = p exactly."""

    def __init__(self):
        super().__init__()
        self.points = torch.nn.Parameter(torch.randn(B, 2, dtype=torch.float64))

    def guided_velocity(self, x_t, t, cond, scale):
        return x_t - self.points


class RecordingNetwork:
    """A TrainedNetwork that back-propagates and keeps the gradients (no optimiser step)."""

    def __init__(self, module):
        self.module = module

    def backward(self, loss):
        loss.backward()

    def step(self):
        pass

    def frozen(self):
        return parameters_frozen(self.module)


def _reference_generator_loss(x_g, eps, t, cond, teacher, fake, k4, k2, alpha, lsg):
    """Written directly from SID.md 4 and 5, independently of sid_ray.sid."""
    tb = t.view(-1, 1)
    x_t = (1 - tb) * x_g + tb * eps

    def cfg(model, k):
        v_c = model.velocity(x_t, t, cond)
        v_u = model.velocity(x_t, t, cond.unconditional())
        return v_u + k * (v_c - v_u)

    x_teacher = x_t - tb * cfg(teacher, k4)
    x_fake = x_t - tb * cfg(fake, k2)
    w = (1 - tb).detach()
    return (
        lsg
        / x_g.shape[0]
        * ((x_teacher - x_fake) * ((x_teacher - x_g) - alpha * (x_teacher - x_fake)) * w).sum()
    )


def test_generator_loss_gradient_matches_the_reference_through_both_networks():
    torch.manual_seed(0)
    teacher = ExactMixtureTeacher(ring_mixture())
    fake = LabelMLPVelocity(2, 8, width=32, depth=2).double()
    generator = PointGenerator()
    cond = label_conditioning(torch.tensor([0, 1, 2, 3, 8, 8]), 8)
    settings = sid_settings(
        num_steps=4,
        time_law=make_time_law("logit_normal"),
        teacher_guidance=3.0,
        fake_guidance_eval=-0.5,
        alpha=1.0,
        generator_loss_scale=100.0,
    )
    ctx = StepContext(seed=11, iteration=5, latent_shape=(2,), dtype=torch.float64, k=1)
    nets = SiDNetworks(teacher, RecordingNetwork(fake), RecordingNetwork(generator))
    loss, dropped, _ = generator_update(nets, [MicroBatch(cond, B, noise_key=3)], settings, ctx)
    assert dropped.item() == 0
    # F's and T's parameters took no gradient, and stay trainable afterwards
    assert all(p.grad is None for p in fake.parameters())
    assert all(p.requires_grad for p in fake.parameters())
    # replay the step's noise: z, then eps and t (a one-step roll-out draws nothing else)
    g = noise_generator(ctx, 3, "generator")
    torch.randn((B, 2), generator=g, dtype=torch.float64)
    eps = torch.randn((B, 2), generator=g, dtype=torch.float64)
    t = settings.time_law.sample(B, generator=g).double()
    x_g = generator.points.detach().clone().requires_grad_(True)
    ref = _reference_generator_loss(x_g, eps, t, cond, teacher, fake, 3.0, -0.5, 1.0, 100.0)
    (ref_grad,) = torch.autograd.grad(ref, x_g)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(generator.points.grad, ref_grad, rtol=1e-9, atol=1e-10)
    # the paths through the networks' inputs matter: the direct path alone gives another answer
    x_g2 = generator.points.detach().clone().requires_grad_(True)
    tb = t.view(-1, 1)
    with torch.no_grad():
        x_t = (1 - tb) * x_g2 + tb * eps
        x_teacher = x_t - tb * teacher.guided_velocity(x_t, t, cond, 3.0)
        x_fake = x_t - tb * fake.guided_velocity(x_t, t, cond, -0.5)
    direct = 100 / B * ((x_teacher - x_fake) * ((x_teacher - x_g2) - (x_teacher - x_fake)) * (1 - tb)).sum()
    direct.backward()
    assert not torch.allclose(x_g2.grad, ref_grad, rtol=1e-3)


def test_teacher_parameters_take_no_gradient_in_the_generator_update():
    torch.manual_seed(1)
    teacher = LabelMLPVelocity(2, 8, width=16, depth=2).double()  # parameters that *could* take grad
    fake = LabelMLPVelocity(2, 8, width=16, depth=2).double()
    generator = PointGenerator()
    cond = label_conditioning(torch.arange(B) % 9, 8)
    settings = sid_settings(time_law=make_time_law("uniform"))
    nets = SiDNetworks(teacher, RecordingNetwork(fake), RecordingNetwork(generator))
    generator_update(nets, [MicroBatch(cond, B)], settings, StepContext(0, 0, (2,), dtype=torch.float64, k=1))
    assert generator.points.grad is not None and generator.points.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in fake.parameters())


def test_fake_score_loss_formula():
    g = torch.Generator().manual_seed(0)
    v, x_g, eps = (torch.randn(4, 3, 2, 2, generator=g) for _ in range(3))
    expected = ((v - (eps - x_g)) ** 2).flatten(1).sum(dim=1)  # per sample; the step scales and reduces
    torch.testing.assert_close(fake_score_loss(v, x_g, eps), expected)


def test_non_finite_samples_are_dropped_and_counted():
    g = torch.Generator().manual_seed(0)
    x_g = torch.randn(4, 3, generator=g, requires_grad=True)
    x_teacher, x_fake = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    w = torch.rand(4, 1, generator=g)
    clean = generator_loss_without_nonfinite(x_g, x_teacher, x_fake, w, alpha=1.0, scale=100.0)
    x_teacher_bad = x_teacher.clone()
    x_teacher_bad[1, 2] = float("nan")
    x_fake_bad = x_fake.clone()
    x_fake_bad[3, 0] = float("inf")
    out = generator_loss_without_nonfinite(x_g, x_teacher_bad, x_fake_bad, w, alpha=1.0, scale=100.0)
    assert out.num_dropped.item() == 2
    assert torch.isfinite(out.loss)
    keep = torch.tensor([0, 2])
    expected = clean.per_sample[keep].sum() * 100 / 4  # dropped samples contribute 0, B stays 4
    torch.testing.assert_close(out.loss, expected)
    assert torch.isnan(out.per_sample[[1, 3]]).all()
    out.loss.backward()
    assert torch.isfinite(x_g.grad).all() and (x_g.grad[[1, 3]] == 0).all()


def test_non_finite_gradients_become_finite_and_are_counted():
    layer = torch.nn.Linear(3, 1)
    sanitizer = GradientSanitizer(layer)
    x = torch.tensor([[1.0, float("nan"), 0.0]])
    layer(x).sum().backward()
    assert torch.isfinite(layer.weight.grad).all()
    assert sanitizer.pop_count().item() == 1
    assert sanitizer.pop_count() is None
