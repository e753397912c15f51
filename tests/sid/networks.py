"""F and G as plain torch TrainedNetworks for step-level tests (the same seed each call)."""

import torch

from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam


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
