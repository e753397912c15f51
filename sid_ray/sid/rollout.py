"""The K-step generator roll-out (shared/SID.md section 3).

x0_hat = 0; for i < k: t_i = 1 - i/K, x_{t_i} = (1 - t_i) x0_hat + t_i eps_i,
x0_hat = x_{t_i} - t_i G(x_{t_i}, t_i, c).  Only the last step carries a gradient, unless a
share of it is let back through the earlier steps (`earlier_steps_gradient`). A time shift s
moves the times to s u / (1 + (s - 1) u) with u = 1 - i/K (`rollout_times`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from sid_ray.sid.flow import gaussian_noise, interpolate, x0_from_velocity

NOISE_MODES = ("fresh", "fixed", "ddim")


def rollout_times(num_steps: int, shift: float = 1.0) -> list[float]:
    """t_i = s u_i / (1 + (s - 1) u_i) with u_i = 1 - i/K, for i = 0..K-1.

    s = 1 (SID.md): 1, 0.75, 0.5, 0.25 for K = 4. s < 1 moves the later steps toward the data
    (s = 0.5: 1, 0.6, 0.33, 0.14), so the last step has less left to decide; it is SD3's time
    shift, the one diffusers' FlowMatchEulerDiscreteScheduler applies (`shift`), which lets the
    exports sample at the same times (sid_ray.models.export).
    """
    if shift <= 0:
        raise ValueError(f"the roll-out time shift must be positive, got {shift}")
    uniform = [1.0 - i / num_steps for i in range(num_steps)]
    if shift == 1.0:
        return uniform
    return [shift * u / (1 + (shift - 1) * u) for u in uniform]


K_LAWS = ("uniform", "last")


def draw_num_steps(max_steps: int, seed: int, iteration: int, block: int = 1, law: str = "uniform") -> int:
    """k ~ U{1..K}, the same on every rank without communication.

    k is a pure function of (seed, iteration): every rank draws it from its own generator seeded
    identically, and a resumed run draws the same k at the same iteration.

    `block` iterations in a row share one k (1: a fresh k every iteration, as SID.md 3 says). Why blocks: F is trained on the current k's
    outputs only, and with a fresh k every iteration it learns the score of the uniform mixture
    of the K outputs; G's fixed point is then "the mixture matches the data", which the steps
    can meet by making opposite errors (on the exact teachers the 1-step output of a 4-step G
    overshoots and the 4-step output compensates). Over a block F catches up with that one k's
    outputs, so each k's output, the K-step one included, is pushed to the data by itself.
    The blocks of each round of K take every k once (i.i.d. blocks left the 4-step output
    untrained through the last 350 iterations of a run, and worse than the 1-step student).

    `law` "last" always runs all K steps: F only ever
    sees the K-step outputs, so they alone are pushed to the data (the k < K outputs are then
    not trained to be samples; inference runs k = K anyway), at K instead of (K + 1) / 2 roll-out
    passes of G per update.
    """
    if law not in K_LAWS:
        raise ValueError(f"unknown law of k {law!r}; valid: {list(K_LAWS)}")
    if block < 1:
        raise ValueError(f"k block must be >= 1 iteration, got {block}")
    if law == "last":
        return max_steps
    if block == 1:
        g = torch.Generator().manual_seed(zlib.crc32(f"sid-k/{seed}/{iteration}".encode()))
        return int(torch.randint(1, max_steps + 1, (1,), generator=g).item())
    # blocks come in rounds of K, one block of each k in a seeded order: no k goes unseen for
    # more than 2K - 2 blocks, so none is stale when the run (and its learning rate) ends
    index = iteration // block
    round_key = f"sid-k/{seed}/block{block}/round{index // max_steps}"
    g = torch.Generator().manual_seed(zlib.crc32(round_key.encode()))
    return int(torch.randperm(max_steps, generator=g)[index % max_steps].item()) + 1


def rollout(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    num_steps: int,
    max_steps: int,
    noise: str = "fresh",
    generator: torch.Generator | None = None,
    grad_last_step: bool = False,
    earlier_steps_gradient: float = 0.0,
    earlier_steps_recompute: bool = False,
    time_shift: float = 1.0,
) -> torch.Tensor:
    """Run k = `num_steps` steps of the K = `max_steps` step generator from noise z.

    `velocity(x_t, t)` is the generator's (unguided) velocity with the condition bound in;
    t is passed as a (B,) tensor. The last step builds an autograd graph when `grad_last_step`
    (the G update) and otherwise runs under no_grad. Steps before the last build none (SID.md 3)
    unless `earlier_steps_gradient` > 0: then the G update's gradient also flows back through
    them, scaled by that share at each earlier step's output (the forward values are unchanged;
    the roll-out's activations are then kept for all k steps, not one, unless
    `earlier_steps_recompute`: then each earlier step keeps only its input and its forward runs
    again in the backward, so the steps' activations live one at a time). The steps run at
    `rollout_times(max_steps, time_shift)`.
    """
    if not 1 <= num_steps <= max_steps:
        raise ValueError(f"num_steps must be in 1..{max_steps}, got {num_steps}")
    if noise not in NOISE_MODES:
        raise ValueError(f"unknown roll-out noise {noise!r}; valid: {list(NOISE_MODES)}")
    times = rollout_times(max_steps, time_shift)
    batch = z.shape[0]
    x0_hat = torch.zeros_like(z)
    eps, x_t = z, z
    for i in range(num_steps):
        t_i = times[i]
        if i > 0:
            if noise == "fresh":
                eps = gaussian_noise(z.shape, generator, z.device, z.dtype)
            elif noise == "ddim":
                # the noise the previous step's x_{t_{i-1}} implies, given its own x0 estimate
                t_prev = times[i - 1]
                eps = (x_t - (1 - t_prev) * x0_hat) / t_prev
            # "fixed" keeps eps = z
        x_t = interpolate(x0_hat, eps, t_i)
        t_vec = torch.full((batch,), t_i, device=z.device, dtype=z.dtype)
        last = i == num_steps - 1
        through = grad_last_step and (last or earlier_steps_gradient > 0)
        earlier_with_grad = through and not last
        with torch.set_grad_enabled(through):
            if earlier_with_grad and earlier_steps_recompute:
                v = checkpoint(velocity, x_t, t_vec, use_reentrant=False)
            else:
                v = velocity(x_t, t_vec)
            x0_hat = x0_from_velocity(x_t, t_i, v)
            if earlier_with_grad and earlier_steps_gradient != 1.0:
                x0_hat = x0_hat.detach() + earlier_steps_gradient * (x0_hat - x0_hat.detach())
    return x0_hat
