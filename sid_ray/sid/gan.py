"""The data-aided (diffusion-GAN, "SiDA") terms of SID.md section 6, on plain tensors.

There is no new network: the discriminator's logits are F's pooled last hidden states (one logit
per feature channel, `FlowModel.guided_velocity_with_features`), so each sample's BCE is the
mean over its channels. Like the SiD losses, sums over the micro-batch are divided by B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DataAidedSettings:
    """SID.md 6's weights and schedule (built from `sid.data_aided`, whose defaults are the only ones)."""

    discriminator_weight: float  # lsd
    generator_weight: float  # lsg_gan
    warmup_kimg: float  # until then G's loss is L_SiD alone
    generator_hold_kimg: float  # until then G takes no step

    def generator_mix(self, kimg: float) -> tuple[float, float]:
        """(weight of L_SiD, weight of L_GAN) in G's loss at `kimg` images seen."""
        return (1.0, 0.0) if kimg < self.warmup_kimg else (0.5, 0.5)

    def generator_holds(self, kimg: float) -> bool:
        return kimg < self.generator_hold_kimg


def bce_per_sample(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE of (B, C) logits against the label real (1) or fake (0), averaged over channels: (B,)."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(dim=1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """lsd * mean_per_sample(BCE(D(real_t), 1) + BCE(D(fake_t), 0)) / 2, F's extra term."""
    per_sample = (bce_per_sample(real_logits, True) + bce_per_sample(fake_logits, False)) / 2
    return weight * per_sample.mean()


def generator_gan_loss(
    fake_logits: torch.Tensor, time_weight: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """sum_b BCE(D(fake_t), 1) w(t) / B over the samples `keep` marks finite (the rest add 0)."""
    per_sample = bce_per_sample(fake_logits, True) * time_weight.flatten().float()
    zero = torch.zeros((), dtype=per_sample.dtype, device=per_sample.device)
    return torch.where(keep, per_sample, zero).sum() / fake_logits.shape[0]
