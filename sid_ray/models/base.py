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

    def feature_layer(self) -> nn.Module:
        """The layer whose input is the discriminator's feature map (SID.md 6): the output
        head's final norm.

        diffusers' DiTs (FLUX, SD3, SANA) all end in `norm_out` then `proj_out`; the input of
        `norm_out` is the last transformer block's hidden state, one vector per image token. (Its
        output is a poor discriminator: each token is layer-normalised and then modulated by t
        and the prompt only, which real and fake samples share, so its channels sum to a
        constant; measured on the digits teacher, a D on it stayed at chance, BCE ~ ln 2.)
        """
        layer = getattr(getattr(self, "transformer", None), "norm_out", None)
        if layer is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no transformer output head: the data-aided "
                "variant (sid.data_aided) needs a DiT teacher"
            )
        return layer

    def guided_velocity_with_features(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CFG_scale[v], pooled features (B, C)): the features of the first pass (the conditional
        half when CFG doubles the batch), averaged over tokens. No extra network pass."""
        captured: list[torch.Tensor] = []
        handle = self.feature_layer().register_forward_hook(
            lambda _m, inputs, _out: captured.append(inputs[0])
        )
        try:
            v = self.guided_velocity(x_t, t, cond, scale)
        finally:
            handle.remove()
        features = captured[0][: x_t.shape[0]]
        return v, features.flatten(1, -2).mean(dim=1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        scale: float = 1.0,
        with_features: bool = False,
    ):
        # forward() is what DeepSpeed engines call; it must be the guided velocity (and, for the
        # data-aided F, its discriminator features from the same pass)
        if with_features:
            return self.guided_velocity_with_features(x_t, t, cond, scale)
        return self.guided_velocity(x_t, t, cond, scale)
