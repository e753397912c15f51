"""One SiD iteration: the fake-score (F) update(s), then one generator (G) update (SID.md section 4).

`distill_step` is the single step function that both the single-process loop and the Ray Train
worker call. What differs between them (plain torch optimisers or DeepSpeed engines, gradient
accumulation, sharding) hides behind `TrainedNetwork`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from sid_ray.sid.flow import gaussian_noise, interpolate, x0_from_velocity
from sid_ray.sid.gan import DataAidedSettings, discriminator_loss, generator_gan_loss
from sid_ray.sid.guidance import Conditioning, VelocityModel
from sid_ray.sid.losses import batch_loss, fake_score_loss
from sid_ray.sid.nonfinite import generator_loss_without_nonfinite
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
    """The numbers of SID.md sections 3 to 5 that one iteration needs.

    No defaults here: the user's SiDConfig is the one source of every value, and
    `sid_ray.train.sid_settings.settings_from_config` builds this from it."""

    num_steps: int  # K
    k_law: str  # how k in 1..K is drawn: "uniform" (SID.md 3) or "last" (always K)
    k_block: int  # iterations in a row that share one k (1 = a fresh k every iteration)
    rollout_noise: str
    rollout_time_shift: float  # s of the roll-out times (1 = SID.md's t_i = 1 - i/K)
    # share of G's gradient that flows back through the roll-out's earlier steps (0 = SID.md)
    earlier_steps_gradient: float
    earlier_steps_recompute: bool  # recompute those steps in the backward instead of keeping them
    time_law: object  # an object with .sample(batch, generator, device) -> t (B,)
    weighting: str
    alpha: float
    fake_loss_scale: float  # ls
    generator_loss_scale: float  # lsg
    fake_guidance_train: float  # k1
    fake_guidance_eval: float  # k2
    teacher_guidance: float  # k4
    generator_guidance: float
    # F updates before each G update (1 = SID.md; more lets F track G more closely, a two
    # time-scale variant; each draws its own noise, all with the iteration's k)
    fake_updates: int
    # the data-aided variant (SID.md 6); None = data-free SiD
    data_aided: DataAidedSettings | None


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


@dataclass(frozen=True)
class StepContext:
    """Where one iteration stands: the streams its noise and k come from, and where tensors live."""

    seed: int
    iteration: int
    latent_shape: tuple[int, ...]
    device: torch.device | str = "cpu"
    dtype: torch.dtype = torch.float32
    kimg: float = 0.0  # thousands of images seen before this iteration (the data-aided schedule)
    k: int = 1  # this iteration's roll-out steps (`distill_step` draws it)


@dataclass
class SiDNetworks:
    """T, F and G as one iteration sees them."""

    teacher: VelocityModel
    fake: TrainedNetwork
    generator: TrainedNetwork


def noise_generator(ctx: StepContext, noise_key: int, phase: str) -> torch.Generator:
    """A generator for one micro-batch's z, eps and t in one phase ('fake' or 'generator')."""
    key = zlib.crc32(f"sid-noise/{ctx.seed}/{ctx.iteration}/{noise_key}/{phase}".encode())
    return torch.Generator(device=ctx.device).manual_seed(key)


def _noised(x_g, batch, settings, g):
    eps = gaussian_noise(x_g.shape, g, x_g.device, x_g.dtype)
    t = settings.time_law.sample(batch, generator=g, device=x_g.device).to(x_g.dtype)
    return eps, t, interpolate(x_g, eps, t)


def _draw_rollout(generator: VelocityModel, mb: MicroBatch, settings: SiDSettings, ctx: StepContext, g, grad):
    """G's k-step roll-out from fresh z (SID.md 3); only the last step may carry a gradient."""
    z = gaussian_noise((mb.batch_size, *ctx.latent_shape), g, ctx.device, ctx.dtype)

    def velocity(x_t, t):
        return generator.guided_velocity(x_t, t, mb.cond, settings.generator_guidance)

    return rollout(
        velocity,
        z,
        ctx.k,
        settings.num_steps,
        settings.rollout_noise,
        g,
        grad_last_step=grad,
        earlier_steps_gradient=settings.earlier_steps_gradient,
        earlier_steps_recompute=settings.earlier_steps_recompute,
        time_shift=settings.rollout_time_shift,
    )


def fake_update(
    nets: SiDNetworks,
    micro_batches: Sequence[MicroBatch],
    settings: SiDSettings,
    ctx: StepContext,
    phase="fake",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train F on the generator's samples: one optimiser step over all micro-batches.

    Returns (F's loss, its discriminator part: 0 when data-free). `phase` names the noise
    stream, so that repeated F updates of one iteration differ."""
    total = torch.zeros((), device=ctx.device)
    disc_total = torch.zeros((), device=ctx.device)
    fake, k1 = nets.fake, settings.fake_guidance_train
    for mb in micro_batches:
        g = noise_generator(ctx, mb.noise_key, phase)
        with torch.no_grad():
            x_g = _draw_rollout(nets.generator.module, mb, settings, ctx, g, False)
        eps, t, x_t = _noised(x_g, mb.batch_size, settings, g)
        if settings.data_aided is None:
            v_fake = fake.module.guided_velocity(x_t, t, mb.cond, k1)
            loss = batch_loss(fake_score_loss(v_fake, x_g, eps), settings.fake_loss_scale)
        else:
            # SID.md 6: the reals are noised with the fakes' t and eps; one F pass on both
            x_real_t = interpolate(_real_latents(mb, x_g), eps, t)
            both = torch.cat([x_t, x_real_t])
            v, features = fake.module.guided_velocity_with_features(
                both, torch.cat([t, t]), mb.cond.doubled(), k1
            )
            fake_features, real_features = features.chunk(2)
            disc = discriminator_loss(real_features, fake_features, settings.data_aided.discriminator_weight)
            loss = batch_loss(fake_score_loss(v[: mb.batch_size], x_g, eps), settings.fake_loss_scale) + disc
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
    nets: SiDNetworks,
    micro_batches: Sequence[MicroBatch],
    settings: SiDSettings,
    ctx: StepContext,
    loss_mix: tuple[float, float] = (1.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train G through the teacher's and the frozen fake network's inputs.

    G's loss is `loss_mix[0] L_SiD + loss_mix[1] lsg_gan L_GAN` (data-aided runs; (1, 0) otherwise,
    which never asks F for features). Returns (loss, dropped samples, the L_GAN part)."""
    total = torch.zeros((), device=ctx.device)
    gan_total = torch.zeros((), device=ctx.device)
    dropped = torch.zeros((), dtype=torch.int64, device=ctx.device)
    # T and F take no parameter gradient here: the gradient reaches G through their inputs only
    with nets.fake.frozen(), parameters_frozen(nets.teacher):
        for mb in micro_batches:
            loss, out, gan = _generator_micro_step(nets, mb, settings, ctx, loss_mix)
            nets.generator.backward(loss)
            nets.generator.step()
            total, dropped = total + loss.detach(), dropped + out.num_dropped
            gan_total = gan_total + gan
    n = len(micro_batches)
    return total / n, dropped, gan_total / n


def _generator_micro_step(nets: SiDNetworks, mb, settings: SiDSettings, ctx: StepContext, loss_mix):
    """One micro-batch of G's update: (loss, its GeneratorLoss, the detached L_GAN part)."""
    sid_mix, gan_mix = loss_mix
    k2 = settings.fake_guidance_eval
    g = noise_generator(ctx, mb.noise_key, "generator")
    x_g = _draw_rollout(nets.generator.module, mb, settings, ctx, g, True)
    eps, t, x_t = _noised(x_g, mb.batch_size, settings, g)
    v_teacher = nets.teacher.guided_velocity(x_t, t, mb.cond, settings.teacher_guidance)
    if gan_mix:
        v_fake, fake_features = nets.fake.module.guided_velocity_with_features(x_t, t, mb.cond, k2)
    else:
        v_fake = nets.fake.module.guided_velocity(x_t, t, mb.cond, k2)
    x_teacher = x0_from_velocity(x_t, t, v_teacher)
    x_fake = x0_from_velocity(x_t, t, v_fake)
    weight = loss_weight(settings.weighting, t, x_g=x_g.detach(), x_teacher=x_teacher.detach())
    out = generator_loss_without_nonfinite(
        x_g, x_teacher, x_fake, weight, settings.alpha, settings.generator_loss_scale
    )
    loss, gan = sid_mix * out.loss, torch.zeros((), device=ctx.device)
    if gan_mix:
        keep = torch.isfinite(out.per_sample) & torch.isfinite(fake_features).all(dim=1)
        gan = settings.data_aided.generator_weight * generator_gan_loss(fake_features, weight, keep)
        loss = loss + gan_mix * gan
    return loss, out, gan.detach()


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
    nets: SiDNetworks, micro_batches: Sequence[MicroBatch], settings: SiDSettings, ctx: StepContext
) -> StepMetrics:
    """One SiD iteration. k ~ U{1..K} is a function of (seed, iteration): equal on all ranks.

    `ctx.kimg` (images seen before this iteration, in thousands) drives the data-aided schedule."""
    ctx = dataclasses.replace(
        ctx,
        k=draw_num_steps(
            settings.num_steps, ctx.seed, ctx.iteration, block=settings.k_block, law=settings.k_law
        ),
    )
    # the first F update keeps the single-update noise stream: fake_updates=1 is SID.md exactly;
    # the loss reported is the last one, the F that G's update then sees
    for j in range(settings.fake_updates):
        fake_loss, disc_loss = fake_update(
            nets, micro_batches, settings, ctx, "fake" if j == 0 else f"fake/{j}"
        )
    aided = settings.data_aided
    if aided is None:
        gen_loss, dropped, _ = generator_update(nets, micro_batches, settings, ctx)
        return StepMetrics(ctx.k, fake_loss, gen_loss, dropped)
    zero = torch.zeros((), device=ctx.device)
    if aided.generator_holds(ctx.kimg):  # SID.md 6: F learns to discriminate before G moves
        gen_loss, dropped, gan_loss = zero, zero.long(), zero
    else:
        mix = aided.generator_mix(ctx.kimg)
        gen_loss, dropped, gan_loss = generator_update(nets, micro_batches, settings, ctx, loss_mix=mix)
    return StepMetrics(ctx.k, fake_loss, gen_loss, dropped, disc_loss, gan_loss)


@contextlib.contextmanager
def parameters_frozen(module) -> Iterator[None]:
    """Turn off requires_grad on the parameters that have it, and restore them afterwards
    (a velocity without parameters, e.g. the exact teacher, has nothing to freeze)."""
    params = module.parameters() if isinstance(module, torch.nn.Module) else ()
    trainable = [p for p in params if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
