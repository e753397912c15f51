"""sid.fake_updates: several F updates, each on its own noise, before the one G update."""

import dataclasses

import pytest
import torch

from sid_ray.config import ConfigError, load_config
from sid_ray.models.registry import build_adapter
from sid_ray.sid.rollout import draw_num_steps
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, distill_step, fake_update, generator_update
from sid_ray.train.sid_settings import settings_from_config
from tests.sid.networks import parameters_of, trained_copies

SEED, ITERATION = 3, 5


@pytest.fixture(scope="module")
def world():
    config = load_config(None, ["model.name=gmm-ring", "model.toy_fit_steps=50"])
    adapter = build_adapter(config)
    cond = adapter.encode_prompts(["mode 0", "mode 3", "mode 5", ""] * 4)
    return adapter, settings_from_config(config.sid), [MicroBatch(cond, 16, noise_key=0)]


def _adam_steps(net) -> int:
    return int(next(iter(net.optimizer.state.values()))["step"])


def test_two_fake_updates_are_two_f_steps_on_fresh_noise_then_one_g_step(world):
    adapter, settings, micro = world
    shape = adapter.latent_shape
    fake, generator = trained_copies(adapter)
    ctx = StepContext(SEED, ITERATION, shape)
    metrics = distill_step(
        SiDNetworks(adapter.teacher, fake, generator),
        micro,
        dataclasses.replace(settings, fake_updates=2),
        ctx,
    )
    assert (_adam_steps(fake), _adam_steps(generator)) == (2, 1)

    # the same by hand: F on the "fake" stream, F on the "fake/1" stream, then G
    fake_ref, generator_ref = trained_copies(adapter)
    ctx = dataclasses.replace(ctx, k=draw_num_steps(settings.num_steps, SEED, ITERATION))
    nets = SiDNetworks(adapter.teacher, fake_ref, generator_ref)
    first, _ = fake_update(nets, micro, settings, ctx, phase="fake")
    second, _ = fake_update(nets, micro, settings, ctx, phase="fake/1")
    generator_update(nets, micro, settings, ctx)
    assert float(first) != float(second)  # another noise draw, and F has moved
    assert float(metrics.fake_loss) == float(second)
    for a, b in zip(
        parameters_of(fake) + parameters_of(generator),
        parameters_of(fake_ref) + parameters_of(generator_ref),
        strict=True,
    ):
        assert torch.equal(a, b)

    # one update (the default) is a different iteration: F took one step only
    fake_one, generator_one = trained_copies(adapter)
    distill_step(SiDNetworks(adapter.teacher, fake_one, generator_one), micro, settings, ctx)
    assert _adam_steps(fake_one) == 1
    assert any(
        not torch.equal(a, b) for a, b in zip(parameters_of(fake_one), parameters_of(fake), strict=True)
    )


def test_fake_updates_must_be_positive():
    with pytest.raises(ConfigError, match="sid.fake_updates"):
        load_config(None, ["sid.fake_updates=0"])
