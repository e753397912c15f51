"""One SiD iteration: the fake-score (F) update(s), then one generator (G) update (SID.md section 4).

`distill_step` is the single step function that both the single-process loop and the Ray Train
worker call. What differs between them (plain torch optimisers or DeepSpeed engines, gradient
accumulation, sharding) hides behind `TrainedNetwork`.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from sid_ray.sid.flow import gaussian_noise, interpolate, x0_from_velocity
from sid_ray.sid.gan import DataAidedSettings, discriminator_loss, generator_gan_loss
from sid_ray.sid.guidance import Conditioning, VelocityModel
from sid_ray.sid.losses import fake_score_loss, generator_loss
from sid_ray.sid.rollout import draw_num_steps, rollout
from sid_ray.sid.weighting import loss_weight


class TrainedNetwork(Protocol):
    """A network with its optimiser: a torch module + Adam, or a DeepSpeed engine."""

    module: VelocityModel

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate one micro-batch's loss (scaled for accumulation by the implementation)."""

    def step(self) -> None:
        """Called after every micro-batch; steps the optimiser at the accumulation boundary."""

    def frozen(self) -> contextlib.AbstractContextManager:
        """A context in which the module's parameters take no gradient."""


@dataclass(frozen=True)
class SiDSettings:
    """The numbers of SID.md sections 3 to 5 that one iteration needs (built from the config)."""

    num_steps: int = 4  # K
    rollout_noise: str = "fresh"
    time_law: object = None  # an object with .sample(batch, generator, device) -> t (B,)
    weighting: str = "1-t"
    alpha: float = 1.0
    fake_loss_scale: float = 1.0  # ls
    generator_loss_scale: float = 100.0  # lsg
    fake_guidance_train: float = 1.0  # k1
    fake_guidance_eval: float = 1.0  # k2
    teacher_guidance: float = 1.0  # k4
    generator_guidance: float = 1.0
    # F updates before each G update (1 = SID.md; more lets F track G more closely, a two
    # time-scale variant; each draws its own noise, all with the iteration's k)
    fake_updates: int = 1
    # the data-aided variant (SID.md 6); None = data-free SiD
    data_aided: DataAidedSettings | None = None


@dataclass
class MicroBatch:
    """One micro-batch of conditions, and the key its noise is drawn from.

    `real` (data-aided runs only): the latents of the real images whose captions `cond` encodes,
    in the velocity's layout, one per condition.

    `noise_key` names the micro-batch globally within an iteration (rank * accumulation + index),
    so that one process with accumulation reproduces the noise of several ranks without it.
    """

    cond: Conditioning
    batch_size: int
    noise_key: int = 0
    real: torch.Tensor | None = None


def noise_generator(seed: int, iteration: int, noise_key: int, phase: str, device) -> torch.Generator:
    """A generator for one micro-batch's z, eps and t in one phase ('fake' or 'generator')."""
    key = zlib.crc32(f"sid-noise/{seed}/{iteration}/{noise_key}/{phase}".encode())
    return torch.Generator(device=device).manual_seed(key)


def _generator_velocity(generator: VelocityModel, cond: Conditioning, scale: float):
    return lambda x_t, t: generator.guided_velocity(x_t, t, cond, scale)


def _noised(x_g, batch, settings, g):
    eps = gaussian_noise(x_g.shape, g, x_g.device, x_g.dtype)
    t = settings.time_law.sample(batch, generator=g, device=x_g.device).to(x_g.dtype)
    return eps, t, interpolate(x_g, eps, t)


def _draw_rollout(generator_module, mb, settings, k, g, latent_shape, device, dtype, grad):
    z = gaussian_noise((mb.batch_size, *latent_shape), g, device, dtype)
    velocity = _generator_velocity(generator_module, mb.cond, settings.generator_guidance)
    return rollout(velocity, z, k, settings.num_steps, settings.rollout_noise, g, grad_last_step=grad)


def fake_update(
    fake: TrainedNetwork,
    generator: TrainedNetwork,
    micro_batches: Sequence[MicroBatch],
    settings: SiDSettings,
    k: int,
    seed: int,
    iteration: int,
    latent_shape: tuple[int, ...],
    device,
    dtype=torch.float32,
    phase: str = "fake",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train F on the generator's samples: one optimiser step over all micro-batches.

    Returns (F's loss, its discriminator part: 0 when data-free). `phase` names the noise
    stream, so that repeated F updates of one iteration differ."""
    total = torch.zeros((), device=device)
    disc_total = torch.zeros((), device=device)
    k1 = settings.fake_guidance_train
    for mb in micro_batches:
        g = noise_generator(seed, iteration, mb.noise_key, phase, device)
        with torch.no_grad():
            x_g = _draw_rollout(generator.module, mb, settings, k, g, latent_shape, device, dtype, False)
        eps, t, x_t = _noised(x_g, mb.batch_size, settings, g)
        if settings.data_aided is None:
            v_fake = fake.module.guided_velocity(x_t, t, mb.cond, k1)
            loss = fake_score_loss(v_fake, x_g, eps, settings.fake_loss_scale)
        else:
            # SID.md 6: the reals are noised with the fakes' t and eps; one F pass on both
            x_real_t = interpolate(_real_latents(mb, x_g), eps, t)
            both = torch.cat([x_t, x_real_t])
            v, features = fake.module.guided_velocity_with_features(
                both, torch.cat([t, t]), mb.cond.doubled(), k1
            )
            fake_features, real_features = features.chunk(2)
            disc = discriminator_loss(real_features, fake_features, settings.data_aided.discriminator_weight)
            loss = fake_score_loss(v[: mb.batch_size], x_g, eps, settings.fake_loss_scale) + disc
            disc_total = disc_total + disc.detach()
        fake.backward(loss)
        fake.step()
        total = total + loss.detach()
    return total / len(micro_batches), disc_total / len(micro_batches)


def _real_latents(mb: MicroBatch, x_g: torch.Tensor) -> torch.Tensor:
    if mb.real is None:
        raise ValueError("a data-aided step needs each micro-batch's real latents (MicroBatch.real)")
    if mb.real.shape != x_g.shape:
        raise ValueError(f"real latents {tuple(mb.real.shape)} do not match the fakes' {tuple(x_g.shape)}")
    return mb.real.to(x_g.device, x_g.dtype)


def generator_update(
    teacher: VelocityModel,
    fake: TrainedNetwork,
    generator: TrainedNetwork,
    micro_batches: Sequence[MicroBatch],
    settings: SiDSettings,
    k: int,
    seed: int,
    iteration: int,
    latent_shape: tuple[int, ...],
    device,
    dtype=torch.float32,
    loss_mix: tuple[float, float] = (1.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train G through the teacher's and the frozen fake network's inputs.

    G's loss is `loss_mix[0] L_SiD + loss_mix[1] lsg_gan L_GAN` (data-aided runs; (1, 0) otherwise,
    which never asks F for features). Returns (loss, dropped samples, the L_GAN part)."""
    total = torch.zeros((), device=device)
    gan_total = torch.zeros((), device=device)
    dropped = torch.zeros((), dtype=torch.int64, device=device)
    sid_mix, gan_mix = loss_mix
    k2 = settings.fake_guidance_eval
    # T and F take no parameter gradient here: the gradient reaches G through their inputs only
    teacher_frozen = (
        parameters_frozen(teacher) if isinstance(teacher, torch.nn.Module) else contextlib.nullcontext()
    )
    with fake.frozen(), teacher_frozen:
        for mb in micro_batches:
            g = noise_generator(seed, iteration, mb.noise_key, "generator", device)
            x_g = _draw_rollout(generator.module, mb, settings, k, g, latent_shape, device, dtype, True)
            eps, t, x_t = _noised(x_g, mb.batch_size, settings, g)
            v_teacher = teacher.guided_velocity(x_t, t, mb.cond, settings.teacher_guidance)
            if gan_mix:
                v_fake, fake_features = fake.module.guided_velocity_with_features(x_t, t, mb.cond, k2)
            else:
                v_fake = fake.module.guided_velocity(x_t, t, mb.cond, k2)
            x_teacher = x0_from_velocity(x_t, t, v_teacher)
            x_fake = x0_from_velocity(x_t, t, v_fake)
            weight = loss_weight(settings.weighting, t, x_g=x_g.detach(), x_teacher=x_teacher.detach())
            out = generator_loss(
                x_g, x_teacher, x_fake, weight, settings.alpha, settings.generator_loss_scale
            )
            loss = sid_mix * out.loss
            if gan_mix:
                keep = torch.isfinite(out.per_sample) & torch.isfinite(fake_features).all(dim=1)
                gan = settings.data_aided.generator_weight * generator_gan_loss(fake_features, weight, keep)
                loss = loss + gan_mix * gan
                gan_total = gan_total + gan.detach()
            generator.backward(loss)
            generator.step()
            total = total + loss.detach()
            dropped = dropped + out.num_dropped
    n = len(micro_batches)
    return total / n, dropped, gan_total / n


@dataclass
class StepMetrics:
    """Detached tensors (no host sync inside the step); call `.as_floats()` when logging."""

    num_steps: int
    fake_loss: torch.Tensor
    generator_loss: torch.Tensor
    dropped_samples: torch.Tensor
    # data-aided runs: F's discriminator BCE and G's L_GAN (weighted as they entered the losses)
    discriminator_loss: torch.Tensor | None = None
    generator_gan_loss: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The logged values by name (the Ray worker averages these over ranks)."""
        out = {
            "loss/fake": self.fake_loss,
            "loss/generator": self.generator_loss,
            "nan_dropped_samples": self.dropped_samples,
        }
        if self.discriminator_loss is not None:
            out["loss/discriminator"] = self.discriminator_loss
            out["loss/generator_gan"] = self.generator_gan_loss
        return out

    def as_floats(self) -> dict[str, float]:
        return {"k": float(self.num_steps), **{k: float(v) for k, v in self.tensors().items()}}


def distill_step(
    teacher: VelocityModel,
    fake: TrainedNetwork,
    generator: TrainedNetwork,
    micro_batches: Sequence[MicroBatch],
    settings: SiDSettings,
    seed: int,
    iteration: int,
    latent_shape: tuple[int, ...],
    device,
    dtype=torch.float32,
    kimg: float = 0.0,
) -> StepMetrics:
    """One SiD iteration. k ~ U{1..K} is a function of (seed, iteration): equal on all ranks.

    `kimg` (images seen before this iteration, in thousands) drives the data-aided schedule."""
    k = draw_num_steps(settings.num_steps, seed, iteration)
    args = (micro_batches, settings, k, seed, iteration, latent_shape, device, dtype)
    # the first F update keeps the single-update noise stream: fake_updates=1 is SID.md exactly;
    # the loss reported is the last one, the F that G's update then sees
    for j in range(settings.fake_updates):
        fake_loss, disc_loss = fake_update(fake, generator, *args, phase="fake" if j == 0 else f"fake/{j}")
    aided = settings.data_aided
    if aided is None:
        gen_loss, dropped, _ = generator_update(teacher, fake, generator, *args)
        return StepMetrics(k, fake_loss, gen_loss, dropped)
    zero = torch.zeros((), device=device)
    if aided.generator_holds(kimg):  # SID.md 6: F learns to discriminate before G moves
        gen_loss, dropped, gan_loss = zero, zero.long(), zero
    else:
        gen_loss, dropped, gan_loss = generator_update(
            teacher, fake, generator, *args, loss_mix=aided.generator_mix(kimg)
        )
    return StepMetrics(k, fake_loss, gen_loss, dropped, disc_loss, gan_loss)


@contextlib.contextmanager
def parameters_frozen(module: torch.nn.Module) -> Iterator[None]:
    """Turn off requires_grad on the parameters that have it, and restore them afterwards."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
