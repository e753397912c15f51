"""A seeded family of exact teachers: class-conditional Gaussian mixtures of any shape.

The ring (`gaussian_mixture.ring_mixture`) is one exact teacher; SiD's behaviour on one shape
says little about the next. `generated_mixture(spec)` draws a mixture from a `MixtureSpec`
(dimension, number of modes and classes, the spread of the weights and of the per-mode scales,
how strongly a class prefers its own modes), deterministically from `spec.seed`, so that anyone
can distill a teacher whose answer is known:

    model.name: "gmm:dim=5,modes=6,classes=3,seed=1"   # any MixtureSpec field, the rest default
    model.name: gmm-d5                                 # a named preset (PRESETS)

Class structure: every mode belongs to one class; class c's density is `own` x (its own modes,
in proportion to their weights) + (1 - own) x (the marginal), and class c's prior is the total
weight of its modes. The null condition is then exactly the marginal with the drawn weights
(sum over classes: own x w_m + (1 - own) x w_m = w_m), so the mode masses a student must hit
are the spec's weights, and a class prompt still makes its own modes likely but not certain.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sid_ray.toys.gaussian_mixture import GaussianMixture

SPEC_PREFIX = "gmm:"


@dataclass(frozen=True)
class MixtureSpec:
    dim: int = 2
    modes: int = 6
    classes: int = 3  # every mode belongs to class (its index in a seeded order) mod classes
    seed: int = 0
    radius: float = 2.0  # means lie in the ball of this radius
    std_min: float = 0.1  # per-mode scales log-uniform in [std_min, std_max]
    std_max: float = 0.3
    weight_ratio: float = 4.0  # largest / smallest marginal weight (geometric spacing)
    own: float = 0.8  # class c's weight on its own modes
    separation: float = 3.0  # means at least separation x (s_i + s_j) apart

    def validate(self) -> None:
        checks = [
            (self.dim >= 1, "dim must be >= 1"),
            (self.modes >= 1, "modes must be >= 1"),
            (1 <= self.classes <= self.modes, "classes must be in 1..modes"),
            (self.radius > 0, "radius must be positive"),
            (0 < self.std_min <= self.std_max, "need 0 < std_min <= std_max"),
            (self.weight_ratio >= 1, "weight_ratio must be >= 1"),
            (0 <= self.own <= 1, "own must be in [0, 1]"),
            (self.separation >= 0, "separation must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"mixture spec {spec_name(self)!r}: {message}")


# named presets: the generated teachers of the few-step quality tests (dimensions 2 to 8)
PRESETS: dict[str, MixtureSpec] = {
    "gmm-d2": MixtureSpec(dim=2, modes=6, classes=3, seed=0),
    "gmm-d3": MixtureSpec(dim=3, modes=5, classes=5, seed=1, std_max=0.4),
    "gmm-d5": MixtureSpec(dim=5, modes=6, classes=2, seed=2, std_min=0.08, std_max=0.35),
    "gmm-d8": MixtureSpec(dim=8, modes=8, classes=4, seed=3, radius=2.5),
}


def spec_name(spec: MixtureSpec) -> str:
    """The canonical teacher name of a spec: 'gmm:' and the fields that differ from the defaults."""
    default = MixtureSpec()
    changed = [
        f"{f.name}={getattr(spec, f.name)}"
        for f in dataclasses.fields(spec)
        if getattr(spec, f.name) != getattr(default, f.name)
    ]
    return SPEC_PREFIX + ",".join(changed)


def parse_spec(name: str) -> MixtureSpec:
    """The spec of a teacher name: a preset, or 'gmm:field=value,...' (unnamed fields default)."""
    if name in PRESETS:
        return PRESETS[name]
    if not name.startswith(SPEC_PREFIX):
        raise ValueError(f"{name!r} is neither a mixture preset {sorted(PRESETS)} nor a 'gmm:' spec")
    types = {f.name: f.type for f in dataclasses.fields(MixtureSpec)}
    values = {}
    for item in filter(None, name[len(SPEC_PREFIX) :].split(",")):
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in types or not raw:
            raise ValueError(f"mixture spec {name!r}: {item!r} is not field=value; fields: {sorted(types)}")
        values[key] = int(raw) if types[key] in (int, "int") else float(raw)
    spec = MixtureSpec(**values)
    spec.validate()
    return spec


def generated_mixture(spec: MixtureSpec, dtype=torch.float64) -> GaussianMixture:
    """The mixture `spec` describes, drawn from `spec.seed` (the same numbers on every machine)."""
    spec.validate()
    g = torch.Generator().manual_seed(spec.seed)
    log_std = torch.rand(spec.modes, generator=g, dtype=torch.float64)
    stds = torch.exp(math.log(spec.std_min) + (math.log(spec.std_max) - math.log(spec.std_min)) * log_std)
    means = _separated_means(spec, stds, g)
    # geometric weights from 1 to weight_ratio, in a seeded order over the modes
    steps = torch.linspace(0, 1, spec.modes, dtype=torch.float64)
    weights = (spec.weight_ratio**steps)[torch.randperm(spec.modes, generator=g)]
    weights = weights / weights.sum()
    owner = torch.randperm(spec.modes, generator=g) % spec.classes  # mode -> class
    own_modes = torch.nn.functional.one_hot(owner, spec.classes).T.to(torch.float64)  # (C, M)
    prior = own_modes @ weights  # class c's prior = the weight of its modes
    own_rows = own_modes * weights[None] / prior[:, None]
    class_weights = spec.own * own_rows + (1 - spec.own) * weights[None]
    return GaussianMixture(means.to(dtype), stds.to(dtype), class_weights.to(dtype), prior.to(dtype))


def _separated_means(spec: MixtureSpec, stds: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Means uniform in the ball of `spec.radius`, redrawn until every pair is separated."""
    means: list[torch.Tensor] = []
    for m in range(spec.modes):
        for _ in range(10_000):
            direction = torch.randn(spec.dim, generator=g, dtype=torch.float64)
            r = spec.radius * float(torch.rand(1, generator=g, dtype=torch.float64)) ** (1 / spec.dim)
            candidate = r * direction / direction.norm().clamp_min(1e-12)
            if all(
                (candidate - other).norm() >= spec.separation * (stds[m] + stds[i])
                for i, other in enumerate(means)
            ):
                break
        else:
            raise ValueError(
                f"mixture spec {spec_name(spec)!r}: cannot place {spec.modes} modes "
                f"{spec.separation} x (s_i + s_j) apart in radius {spec.radius}; raise radius"
            )
        means.append(candidate)
    return torch.stack(means)
