"""The model interface the SiD code sees: a flow network wrapped to give velocities.

Every model-specific fact (timestep scale, latent packing, guidance embedding, text encoders)
lives in the adapter subclasses under `sid_ray.models`, never in `sid_ray.sid`.
"""

from __future__ import annotations

import torch
from torch import nn

from sid_ray.sid.guidance import Conditioning, classifier_free_guidance


class FlowModel(nn.Module):
    """A velocity network v(x_t, t, cond) with t in (0, 1), t = 1 pure noise.

    Subclasses implement `velocity` (one network pass, the family's own timestep scale applied
    inside). The default `guided_velocity` is two-pass classifier-free guidance; families with a
    guidance embedding (FLUX.1-dev) override it.
    """

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    def guided_velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> torch.Tensor:
        return classifier_free_guidance(self.velocity, x_t, t, cond, scale)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float = 1.0):
        # forward() is what DeepSpeed engines call; it must be the guided velocity
        return self.guided_velocity(x_t, t, cond, scale)
