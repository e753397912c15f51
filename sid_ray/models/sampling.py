"""Samplers for any adapter's FlowModel: a plain Euler sampler and the K-step SiD sampler.

- `euler_sample` integrates dx/dt = v over a diffusers scheduler's sigmas, step for step as
  `FlowMatchEulerDiscreteScheduler.step` (non-stochastic) does, so a teacher driven by
  `scheduler_schedule(...)` reproduces the stock pipeline's latents (tests compare them).
- `sid_sample` is the distilled generator's inference: the roll-out of SID.md 3 with k = K,
  computed by `sid_ray.sid.rollout.rollout` (the same function training uses).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from sid_ray.models.base import FlowModel
from sid_ray.sid.guidance import Conditioning
from sid_ray.sid.rollout import rollout


def scheduler_schedule(
    scheduler, num_steps: int, **set_timesteps_kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """(times, sigmas) a pipeline would use: times (N,) in (0, 1] given to the model, sigmas (N + 1,)
    ending in 0 for the update. Call with the pipeline's own arguments (FLUX: sigmas=..., mu=...).

    The scheduler is copied, so the caller's keeps its state. Times are `timesteps / 1000` as the
    pipelines pass them (equal to sigmas up to float rounding).
    """
    scheduler = copy.deepcopy(scheduler)
    scheduler.set_timesteps(num_inference_steps=num_steps, **set_timesteps_kwargs)
    times = scheduler.timesteps.float() / scheduler.config.num_train_timesteps
    return times, scheduler.sigmas.float()


@torch.no_grad()
def euler_sample(
    model: FlowModel,
    z: torch.Tensor,
    cond: Conditioning,
    sigmas: Sequence[float] | torch.Tensor,
    times: Sequence[float] | torch.Tensor | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """Euler: x <- x + (sigma_{i+1} - sigma_i) * CFG_guidance[v](x, t_i, cond), from x = z (t = sigma_0).

    `times` default to the sigmas; the update runs in fp32 and the state is kept in the model
    output's dtype between steps, as diffusers' scheduler does.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    times = sigmas[:-1] if times is None else torch.as_tensor(times, dtype=torch.float32)
    x = z
    for i in range(len(times)):
        t = torch.full((x.shape[0],), float(times[i]), device=x.device, dtype=x.dtype)
        v = model.guided_velocity(x, t, cond, guidance)
        x = (x.float() + (sigmas[i + 1] - sigmas[i]).item() * v.float()).to(v.dtype)
    return x


@torch.no_grad()
def sid_sample(
    model: FlowModel,
    z: torch.Tensor,
    cond: Conditioning,
    num_steps: int = 4,
    guidance: float = 1.0,
    noise: str = "fresh",
    generator: torch.Generator | None = None,
    time_shift: float = 1.0,
) -> torch.Tensor:
    """The K-step generator's sample from noise z (SID.md 3, k = K), x0 in the velocity's layout,
    at the roll-out times shifted by `time_shift` (the run's `sid.rollout_time_shift`).

    Fresh noise comes from `generator` (None: torch's global generator, which is what a stock
    diffusers pipeline with a stochastic flow scheduler draws from; see `sid_ray.models.export`).
    `guidance` is the generator's own (SID.md 5: 1, i.e. none; FLUX: the embedding value).
    """

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.guided_velocity(x_t, t, cond, guidance)

    return rollout(velocity, z, num_steps, num_steps, noise=noise, generator=generator, time_shift=time_shift)
