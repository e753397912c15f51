"""Fit a small network to the exact teacher's velocity, so that F and G start as copies of it.

SiD starts F and G as exact copies of the teacher. A closed-form teacher has no weights to
copy, so for the toys the copy is an MLP regressed onto the teacher's velocity
E[eps - x0 | x_t, c] (a low-variance target: no eps - x0 noise). The fit is deterministic and
cached on disk, keyed by everything that changes it: the network's initial weights too are drawn
from the fit's seed, so the cached copy does not depend on who fitted first.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from safetensors.torch import load_file, save_file

from sid_ray.config.paths import cache_dir
from sid_ray.models.base import FlowModel
from sid_ray.sid.flow import interpolate
from sid_ray.sid.time_laws import Uniform
from sid_ray.toys.gaussian_mixture import ExactMixtureTeacher, label_conditioning


def fit_to_teacher(
    teacher: ExactMixtureTeacher,
    module: FlowModel,
    steps: int = 3000,
    batch: int = 512,
    lr: float = 2e-3,
    null_probability: float = 0.2,
    seed: int = 0,
    cache_key: str = "",
) -> dict[str, float]:
    """Regress `module` onto the teacher's velocity over the flow path; returns fit statistics.

    Labels are drawn from the class prior, replaced by the null label with `null_probability`
    (so the copy knows the unconditional velocity CFG needs). The module's weights are
    re-initialised from `seed` first, and the caller's global RNG is neither read nor changed.
    """
    mixture = teacher.mixture
    # the key covers everything the fit depends on, the mixture's numbers included
    mixture_numbers = [
        x.tolist() for x in (mixture.means, mixture.stds, mixture.class_weights, mixture.class_prior)
    ]
    key = hashlib.sha256(
        json.dumps(
            # "seeded-init": fits cached before the initial weights were seeded (they came from
            # whatever the caller's global RNG held) are not reused
            [cache_key, mixture_numbers, steps, batch, lr, null_probability, seed, str(module), "seeded-init"]
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"teacher-fit-{key}.safetensors"
    if path.is_file():
        module.load_state_dict(load_file(path))
        return {"cached": 1.0}
    with torch.random.fork_rng(devices=[]):
        stats = _fit(teacher, module, steps, batch, lr, null_probability, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp)
    os.replace(tmp, path)  # atomic: several workers may fit at once
    return stats


def _fit(teacher, module, steps, batch, lr, null_probability, seed) -> dict[str, float]:
    """The regression itself, from weights drawn afresh from `seed` (the 1-step toy student's
    quality depends on the fit: benchmarks/results/2026-12-02-toy-1step.md)."""
    mixture = teacher.mixture
    torch.manual_seed(seed)
    for layer in module.modules():  # in construction order: the weights a seeded constructor draws
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    time_law = Uniform(low=1e-3, high=1.0)
    for _ in range(steps):
        labels = torch.multinomial(mixture.class_prior.float(), batch, replacement=True, generator=g)
        labels[torch.rand(batch, generator=g) < null_probability] = mixture.num_classes
        cond = label_conditioning(labels, mixture.num_classes)
        x0 = mixture.sample(labels, generator=g).float()
        t = time_law.sample(batch, generator=g)
        x_t = interpolate(x0, torch.randn(x0.shape, generator=g), t)
        with torch.no_grad():
            target = teacher.velocity(x_t, t, cond)
        loss = ((module.velocity(x_t, t, cond) - target) ** 2).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return {"final_mse": float(loss.detach())}
