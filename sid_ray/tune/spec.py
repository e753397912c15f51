"""A sweep's YAML: the base run, the search space, the scheduler and the trials' resources.

    base: configs/demo_digits.yaml        # the run every trial starts from
    set: [train.total_kimg=3.2, eval.every_kimg=0.8]   # overrides of every trial
    num_samples: 4                         # trials (each grid point this many times)
    space:
      optim.generator_lr: {loguniform: [1.0e-5, 1.0e-3]}
      optim.fake_lr: {same_as: optim.generator_lr}      # tied: searched together
      sid.teacher_guidance: {uniform: [1.0, 4.5]}       # apart from the fake's k1, k2 ...
      guidance_mode: {choice: [as_set, cfg, zero_cfg, anti_cfg]}   # ... or a named mode
      sid.alpha: {uniform: [0.8, 1.2]}
      sid.weighting: {choice: ["1-t", "(1-t)^2"]}
    scheduler: {grace_kimg: 0.8, reduction_factor: 2}   # ASHA on eval_fid over kimg
    max_concurrent_trials: 0              # a cap; 0: as many trials as fit with their data streams

A key of `space` is a config field (dotted path) or one of the named keys `guidance_mode` and
`guidance_scale`; a value is one Ray Tune domain: loguniform, uniform, choice, grid, or a fixed
value; `same_as` ties a field to another key's sampled value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from ray import tune

from sid_ray.config.io import load_config
from sid_ray.config.schema import ConfigError, RunConfig

#: SID.md 5: (k4 teacher, k1 fake when trained, k2 fake in G's loss) as functions of the scale s;
#: "as_set" leaves the three as the base config and the space set them (searched apart)
GUIDANCE_MODES = {
    "as_set": None,
    "none": lambda s: (1.0, 1.0, 1.0),
    "cfg": lambda s: (s, s, s),  # the SANA reference: one scale for all three
    "teacher_cfg": lambda s: (s, 1.0, 1.0),
    "zero_cfg": lambda s: (1.0, 0.0, 0.0),  # teacher without CFG, fake without text
    "anti_cfg": lambda s: (1.0, -s, -s),  # negative guidance in the fake network
}
GUIDANCE_FIELDS = ("sid.teacher_guidance", "sid.fake_guidance_train", "sid.fake_guidance_eval")
NAMED_KEYS = ("guidance_mode", "guidance_scale")


@dataclass
class SweepSpec:
    name: str
    base: str
    set: list[str] = field(default_factory=list)
    space: dict[str, dict] = field(default_factory=dict)
    num_samples: int = 1
    metric: str = "eval_fid"
    mode: str = "min"
    scheduler: dict = field(default_factory=dict)
    max_concurrent_trials: int = 0  # at most this many trials at once; 0: as many as the cluster holds
    trial_driver_cpus: float = 0.0  # the trial's own process (it only waits on the Train run)
    output_dir: str = "runs/sweeps"

    def base_config(self, extra: list[str] = ()) -> RunConfig:
        return load_config(self.base, [*self.set, *extra])


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """The spec of a sweep YAML; `overrides` (key=value) replace its top-level keys."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        key, _, value = item.partition("=")
        data[key] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}: unknown sweep keys {sorted(unknown)}; known: {sorted(known)}")
    data.setdefault("name", Path(path).stem)
    spec = SweepSpec(**data)
    check_space(spec)
    return spec


def _domain(key: str, rule: dict):
    if not isinstance(rule, dict) or len(rule) != 1:
        raise ConfigError(f"space.{key}: one of loguniform, uniform, choice, grid, value, same_as")
    ((kind, arg),) = rule.items()
    makers = {
        "loguniform": lambda a: tune.loguniform(*a),
        "uniform": lambda a: tune.uniform(*a),
        "choice": tune.choice,
        "grid": tune.grid_search,
        "value": lambda a: a,
    }
    if kind not in makers:
        raise ConfigError(f"space.{key}: unknown domain {kind!r}; use one of {sorted(makers)} or same_as")
    return makers[kind](arg)


def check_space(spec: SweepSpec) -> None:
    """Every key names a config field or a named key, and the base config loads with it."""
    config = spec.base_config()
    for key, rule in spec.space.items():
        if key not in NAMED_KEYS:
            _field_of(config, key)
        if isinstance(rule, dict) and "same_as" in rule and rule["same_as"] not in spec.space:
            raise ConfigError(f"space.{key}: same_as {rule['same_as']!r} is not a key of the space")
        if key == "guidance_mode" and "choice" in rule:
            bad = [m for m in rule["choice"] if m not in GUIDANCE_MODES]
            if bad:
                raise ConfigError(f"space.guidance_mode: unknown {bad}; named modes: {list(GUIDANCE_MODES)}")


def _field_of(config: RunConfig, dotted: str) -> None:
    node = config
    for part in dotted.split("."):
        if not hasattr(node, part):
            raise ConfigError(f"space.{dotted}: no config field {dotted!r}")
        node = getattr(node, part)


def param_space(spec: SweepSpec) -> dict:
    """Ray Tune's param_space: the sampled keys (tied ones follow in `trial_overrides`)."""
    return {k: _domain(k, r) for k, r in spec.space.items() if not (isinstance(r, dict) and "same_as" in r)}


def trial_overrides(spec: SweepSpec, params: dict) -> list[str]:
    """A trial's config overrides: its sampled fields, the tied ones, the named guidance mode."""
    values = dict(params)
    for key, rule in spec.space.items():
        if isinstance(rule, dict) and "same_as" in rule:
            values[key] = values[rule["same_as"]]
    out = [f"{k}={v}" for k, v in values.items() if k not in NAMED_KEYS]
    mode = GUIDANCE_MODES.get(values.get("guidance_mode", "as_set"))
    if mode is not None:
        scale = float(values.get("guidance_scale", spec.base_config().sid.teacher_guidance))
        out += [f"{f}={k}" for f, k in zip(GUIDANCE_FIELDS, mode(scale), strict=True)]
    return out
