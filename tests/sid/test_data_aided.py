"""The data-aided variant (SiDA, SID.md 6) on the digits teacher: features, losses, schedule."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from sid_ray.config import ConfigError, load_config
from sid_ray.models.registry import build_adapter
from sid_ray.sid.gan import (
    bce_per_sample,
    discriminator_loss,
    generator_gan_loss,
)
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, distill_step
from sid_ray.toys.digits_data import digit_prompt, load_digit_images
from sid_ray.train.sid_settings import settings_from_config
from tests.sid.networks import data_aided_settings, parameters_of, trained_copies

SEED, ITERATION = 2, 7


@pytest.fixture(scope="module")
def world():
    config = load_config(None, ["model.name=digits-flux", "model.resolution=16"])
    adapter = build_adapter(config)
    images, labels = load_digit_images()
    with torch.no_grad():
        real = adapter.encode_images(images[:8])
    cond = adapter.encode_prompts([digit_prompt(int(d)) for d in labels[:8]])
    return adapter, settings_from_config(config.sid), [MicroBatch(cond, 8, noise_key=0, real=real)]


def test_bce_terms_match_their_formulas():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -2.0]])
    softplus = F.softplus
    assert torch.allclose(bce_per_sample(logits, True), softplus(-logits).mean(dim=1))
    assert torch.allclose(bce_per_sample(logits, False), softplus(logits).mean(dim=1))
    fake = -logits
    expected = 3.0 * ((softplus(-logits).mean(1) + softplus(fake).mean(1)) / 2).mean()
    assert torch.allclose(discriminator_loss(logits, fake, 3.0), expected)
    w = torch.tensor([0.5, 2.0]).view(2, 1, 1)
    keep = torch.tensor([True, False])  # the second sample held a NaN somewhere: it adds 0
    assert torch.allclose(generator_gan_loss(fake, w, keep), softplus(-fake[0]).mean() * 0.5 / 2)


def test_schedule_holds_g_then_mixes_half_and_half():
    s = data_aided_settings(warmup_kimg=2.0, generator_hold_kimg=1.0)
    assert s.generator_holds(0.5) and not s.generator_holds(1.0)
    assert s.generator_mix(1.5) == (1.0, 0.0) and s.generator_mix(2.0) == (0.5, 0.5)


def test_features_are_the_pooled_last_hidden_state(world):
    adapter, _, micro = world
    teacher, mb = adapter.teacher, micro[0]
    x = torch.randn(mb.batch_size, *adapter.latent_shape)
    t = torch.full((mb.batch_size,), 0.6)
    seen = []
    handle = teacher.transformer.norm_out.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        v, features = teacher.guided_velocity_with_features(x, t, mb.cond, 1.0)
        v_plain = teacher.guided_velocity(x, t, mb.cond, 1.0)
        # two-pass CFG: the features are those of the conditional half of the doubled batch
        v_cfg, features_cfg = teacher.guided_velocity_with_features(x, t, mb.cond, 2.0)
    handle.remove()
    assert torch.equal(v, v_plain)
    assert torch.allclose(v_cfg, teacher.guided_velocity(x, t, mb.cond, 2.0).detach(), atol=1e-6)
    assert features.shape == (mb.batch_size, teacher.transformer.proj_out.in_features)
    assert torch.allclose(features, seen[0].mean(dim=1), atol=1e-6)
    assert torch.allclose(features_cfg, features, atol=1e-5)


def test_generator_is_held_then_trained_with_the_gan_term(world):
    adapter, settings, micro = world
    aided = data_aided_settings(
        discriminator_weight=10.0, generator_weight=5.0, warmup_kimg=1.0, generator_hold_kimg=0.5
    )
    settings = dataclasses.replace(settings, data_aided=aided)
    fake, generator = trained_copies(adapter)
    f0, g0 = parameters_of(fake), parameters_of(generator)
    nets = SiDNetworks(adapter.teacher, fake, generator)

    def at(kimg: float) -> StepContext:
        return StepContext(SEED, ITERATION, adapter.latent_shape, kimg=kimg)

    held = distill_step(nets, micro, settings, at(0.25))
    assert all(torch.equal(a, b) for a, b in zip(parameters_of(generator), g0, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(parameters_of(fake), f0, strict=True))
    assert math.log(2) * 10 * 0.5 < float(held.discriminator_loss) < 10 * 5  # BCE of a fresh D
    assert float(held.generator_gan_loss) == 0.0

    warming = distill_step(nets, micro, settings, at(0.75))
    assert float(warming.generator_gan_loss) == 0.0  # L_SiD only before the warm-up ends
    assert any(not torch.equal(a, b) for a, b in zip(parameters_of(generator), g0, strict=True))
    mixed = distill_step(nets, micro, settings, at(1.0))
    assert float(mixed.generator_gan_loss) > 0
    assert set(mixed.as_floats()) >= {"loss/discriminator", "loss/generator_gan"}


def test_zero_weights_reduce_to_data_free_sid(world):
    """With lsd = lsg_gan = 0 and no hold, the data-aided step is SiD (F's pass on fakes and
    reals together changes only floating point rounding)."""
    adapter, settings, micro = world
    aided = data_aided_settings(
        discriminator_weight=0.0, generator_weight=0.0, warmup_kimg=1e9, generator_hold_kimg=0
    )
    runs = []
    for s in (settings, dataclasses.replace(settings, data_aided=aided)):
        # Adam's first step (beta1 = 0) is lr * g / (|g| + eps): with eps = 1e-8 a gradient that
        # rounding moves across zero flips a whole +-lr (seen on another CPU); eps = 1 keeps the
        # step continuous in g, so rounding stays rounding
        fake, generator = trained_copies(adapter, eps=1.0)
        distill_step(
            SiDNetworks(adapter.teacher, fake, generator),
            micro,
            s,
            StepContext(SEED, ITERATION, adapter.latent_shape),
        )
        runs.append(parameters_of(fake) + parameters_of(generator))
    for a, b in zip(*runs, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_data_aided_step_without_real_latents_names_the_problem(world):
    adapter, settings, micro = world
    settings = dataclasses.replace(settings, data_aided=data_aided_settings())
    no_real = [dataclasses.replace(micro[0], real=None)]
    fake, generator = trained_copies(adapter)
    with pytest.raises(ValueError, match="real latents"):
        distill_step(
            SiDNetworks(adapter.teacher, fake, generator),
            no_real,
            settings,
            StepContext(SEED, ITERATION, adapter.latent_shape),
        )


def test_config_asks_for_images_and_rejects_a_toy_teacher():
    with pytest.raises(ConfigError, match="data.images"):
        load_config(None, ["sid.data_aided.enabled=true"])
    with pytest.raises(ConfigError, match="generator_weight"):
        load_config(None, ["sid.data_aided.generator_weight=-1"])
    gmm = build_adapter(load_config(None, ["model.name=gmm-ring", "model.toy_fit_steps=10"]))
    with pytest.raises(NotImplementedError, match="DiT teacher"):
        gmm.teacher.feature_layer()
