"""The exact teacher: a class-conditional isotropic Gaussian mixture whose flow velocity is known.

Data: class c in {0..C-1} has p(x0 | c) = sum_m W[c, m] N(mu_m, s_m^2 I); the null condition is
the marginal p(x0) = sum_c prior_c p(x0 | c), so classifier-free guidance has its usual meaning.
For x_t = (1 - t) x0 + t eps and component m,  x_t | m ~ N((1 - t) mu_m, var_m I) with
var_m = (1 - t)^2 s_m^2 + t^2, and

    E[x0  | x_t, m] = mu_m + (1 - t) s_m^2 / var_m * (x_t - (1 - t) mu_m)
    E[eps | x_t, m] = t / var_m * (x_t - (1 - t) mu_m)
    v(x_t, t, c)    = sum_m r_m(x_t, t, c) (E[eps | x_t, m] - E[x0 | x_t, m]),

with r_m the posterior responsibility of component m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning


@dataclass
class GaussianMixture:
    """means (M, D), stds (M,), class_weights (C, M) rows summing to 1, class_prior (C,)."""

    means: torch.Tensor
    stds: torch.Tensor
    class_weights: torch.Tensor
    class_prior: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.class_weights.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def weights(self, labels: torch.Tensor) -> torch.Tensor:
        """Component weights (B, M) for labels (B,); label C is the null condition (the marginal)."""
        marginal = self.class_prior @ self.class_weights
        table = torch.cat([self.class_weights, marginal[None]]).to(self.means)
        return table[labels]

    @property
    def marginal_weights(self) -> torch.Tensor:
        return self.class_prior @ self.class_weights

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples x0 (B, D) for labels (B,)."""
        comp = torch.multinomial(self.weights(labels), 1, generator=generator).squeeze(1)
        noise = torch.randn(labels.shape[0], self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[comp] + self.stds[comp, None] * noise

    def nearest_component(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the closest mean for each row of x (misreads wide modes: see
        `responsibilities`, which mode masses use)."""
        return torch.cdist(x.to(self.means), self.means).argmin(dim=1)

    def responsibilities(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """p(m | x0, c) (B, M) under the true mixture; labels None = the marginal (null condition).

        Averaged over exact samples this is the component weight, whatever the modes' widths and
        overlaps: the unbiased way to read a sample set's mode masses (the nearest mean gives a
        wide mode's outskirts to its narrow neighbours)."""
        if labels is None:
            labels = torch.full((x0.shape[0],), self.num_classes, dtype=torch.long)
        t0 = torch.zeros(x0.shape[0], dtype=self.means.dtype)
        _, _, resp = self._posterior(x0, t0, labels)
        return resp[..., 0]

    def _posterior(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor):
        """(centred (B, M, D), var (B, M, 1), responsibilities (B, M, 1)) of x_t given each mode."""
        x = x_t.to(self.means.dtype)
        t = t.to(self.means.dtype).reshape(-1, 1, 1)  # (B, 1, 1)
        s2 = (self.stds**2)[None, :, None]  # (1, M, 1)
        var = (1 - t) ** 2 * s2 + t**2  # (B, M, 1)
        centred = x[:, None, :] - (1 - t) * self.means[None]  # (B, M, D)
        log_density = -0.5 * (centred**2).sum(-1) / var[..., 0] - 0.5 * self.dim * torch.log(
            2 * math.pi * var[..., 0]
        )
        log_w = torch.log(self.weights(labels.to(self.means.device)).clamp_min(1e-300))
        return centred, var, torch.softmax(log_w + log_density, dim=1)[..., None]

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The exact v = E[eps - x0 | x_t, c] (module docstring), computed in the means' dtype."""
        centred, var, resp = self._posterior(x_t, t, labels)
        t = t.to(self.means.dtype).reshape(-1, 1, 1)
        s2 = (self.stds**2)[None, :, None]
        e_eps = t / var * centred
        e_x0 = self.means[None] + (1 - t) * s2 / var * centred
        return (resp * (e_eps - e_x0)).sum(dim=1).to(x_t.dtype)


def ring_mixture(
    num_modes: int = 8,
    radius: float = 2.0,
    std: float = 0.15,
    own_class_weight: float = 0.7,
    dtype=torch.float64,
) -> GaussianMixture:
    """8 (by default) modes on a circle with unequal marginal weights, one class per mode.

    Class c puts `own_class_weight` on mode c and spreads the rest over the others in proportion
    to their prior, so a class prompt makes its mode likely but not certain; guidance > 1 then
    concentrates samples further on it.
    """
    angles = torch.arange(num_modes, dtype=dtype) * (2 * math.pi / num_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    prior = torch.arange(3, num_modes + 3, dtype=dtype)
    prior = prior / prior.sum()  # weights 3:4:...:10, so a mode-dropping generator is visible
    others = prior[None].repeat(num_modes, 1)
    others.fill_diagonal_(0)
    others = others / others.sum(dim=1, keepdim=True) * (1 - own_class_weight)
    class_weights = others + torch.eye(num_modes, dtype=dtype) * own_class_weight
    return GaussianMixture(means, torch.full((num_modes,), std, dtype=dtype), class_weights, prior)


def label_conditioning(labels: torch.Tensor, num_classes: int) -> TensorConditioning:
    """Conditions for class labels; the null label is `num_classes`."""
    null = torch.full((1,), num_classes, dtype=torch.long, device=labels.device)
    return TensorConditioning({"label": labels.long()}, {"label": null})


class ExactMixtureTeacher(FlowModel):
    """The closed-form teacher behind the same interface as the DiT adapters."""

    def __init__(self, mixture: GaussianMixture):
        super().__init__()
        self.mixture = mixture

    def velocity(self, x_t, t, cond: TensorConditioning):
        return self.mixture.velocity(x_t, t, cond.tensors["label"])
