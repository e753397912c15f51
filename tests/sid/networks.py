"""F and G as plain torch TrainedNetworks for step-level tests (the same seed each call)."""

import dataclasses

import torch

from sid_ray.config.schema import DataAidedConfig, SiDConfig
from sid_ray.sid.gan import DataAidedSettings
from sid_ray.sid.step import SiDNetworks, SiDSettings, StepContext
from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam
from sid_ray.train.sid_settings import settings_from_config


def trained_copies(
    adapter, lr: float = 1e-3, eps: float = 1e-8
) -> tuple[TorchTrainedNetwork, TorchTrainedNetwork]:
    torch.manual_seed(0)
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    return (
        TorchTrainedNetwork(fake, sid_adam(fake.parameters(), lr, eps=eps)),
        TorchTrainedNetwork(generator, sid_adam(generator.parameters(), lr, eps=eps)),
    )


def parameters_of(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.module.parameters()]


def sid_settings(**overrides) -> SiDSettings:
    """SiDSettings on SiDConfig's defaults (their one source), with `overrides`."""
    return dataclasses.replace(settings_from_config(SiDConfig()), **overrides)


def data_aided_settings(**overrides) -> DataAidedSettings:
    defaults = DataAidedConfig()
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(DataAidedSettings)}
    return DataAidedSettings(**{**fields, **overrides})


def step_context(seed: int, iteration: int, latent_shape, **kwargs) -> StepContext:
    return StepContext(seed, iteration, tuple(latent_shape), **kwargs)


def networks(teacher, fake, generator) -> SiDNetworks:
    return SiDNetworks(teacher, fake, generator)
