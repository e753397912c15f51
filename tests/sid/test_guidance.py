"""SID.md section 5: classifier-free guidance, Zero-CFG and Anti-CFG."""

import torch

from sid_ray.sid import cfg_combine, classifier_free_guidance
from sid_ray.toys.gaussian_mixture import ExactMixtureTeacher, label_conditioning, ring_mixture


class CountingModel(ExactMixtureTeacher):
    def __init__(self):
        super().__init__(ring_mixture())
        self.passes = []

    def velocity(self, x_t, t, cond):
        self.passes.append(cond.tensors["label"].clone())
        return super().velocity(x_t, t, cond)


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    t = torch.rand(6, generator=g, dtype=torch.float64)
    return x, t, label_conditioning(torch.arange(6), 8)


def test_scale_one_and_zero_are_single_passes():
    x, t, cond = _inputs()
    model = CountingModel()
    v1 = model.guided_velocity(x, t, cond, 1.0)
    assert len(model.passes) == 1 and torch.equal(model.passes[0], torch.arange(6))
    v0 = model.guided_velocity(x, t, cond, 0.0)
    assert len(model.passes) == 2 and torch.equal(model.passes[1], torch.full((6,), 8))
    torch.testing.assert_close(v1, model.velocity(x, t, cond))
    torch.testing.assert_close(v0, model.velocity(x, t, cond.unconditional()))


def test_cfg_formula_including_anti_cfg():
    x, t, cond = _inputs()
    model = CountingModel()
    v_c, v_u = model.velocity(x, t, cond), model.velocity(x, t, cond.unconditional())
    model.passes.clear()
    for scale in (4.5, -1.0, 2.0):
        guided = model.guided_velocity(x, t, cond, scale)
        torch.testing.assert_close(guided, v_u + scale * (v_c - v_u))
    # one batched pass of 2B per guided call
    assert [p.shape[0] for p in model.passes] == [12, 12, 12]


def test_cfg_combine_endpoints():
    a, b = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(cfg_combine(a, b, 1.0), a)
    torch.testing.assert_close(cfg_combine(a, b, 0.0), b)
    calls = []
    classifier_free_guidance(
        lambda x, t, c: calls.append(1) or x,
        torch.zeros(2, 1),
        torch.zeros(2),
        label_conditioning(torch.zeros(2), 8),
        1.0,
    )
    assert calls == [1]
