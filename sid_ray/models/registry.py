"""Teacher names -> adapter builders.

Each family module registers its names with `register`; `build_adapter(config)` imports the
module that owns the name only when it is asked for, so a toy run never imports diffusers.

A builder is called as `builder(model_config, sid=sid_config)`: the model section says what to
load, the SiD section what the adapter must know of the method (FLUX: the guidance scales it
checks against its guidance modes, and the generator's guidance embedding that export folds in).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sid_ray.config.schema import ConfigError, ModelConfig, RunConfig, SiDConfig

if TYPE_CHECKING:
    from sid_ray.models.adapter import TeacherAdapter

# name -> module that registers it (imported lazily)
_OWNERS: dict[str, str] = {
    "gmm-ring": "sid_ray.models.gaussian_mixture_adapter",
    "flux-dev": "sid_ray.models.flux",
    "flux-tiny": "sid_ray.models.flux",
    "sd35-large": "sid_ray.models.sd3",
    "sd35-medium": "sid_ray.models.sd3",
    "sd3-medium": "sid_ray.models.sd3",
    "sd3-tiny": "sid_ray.models.sd3",
    "sana-600m": "sid_ray.models.sana",
    "sana-1600m": "sid_ray.models.sana",
    "sana-tiny": "sid_ray.models.sana",
    "digits-flux": "sid_ray.models.digits",
}
_BUILDERS: dict[str, Callable[..., TeacherAdapter]] = {}
# name -> the teacher's own prompt list (the toys' class prompts), computed without its weights
_DEFAULT_PROMPTS: dict[str, Callable[[ModelConfig], list[str]]] = {}


def register(
    name: str,
    builder: Callable[..., TeacherAdapter],
    default_prompts: Callable[[ModelConfig], list[str]] | None = None,
) -> None:
    """Called by a family module at import: `builder(model_config, sid=sid_config) -> TeacherAdapter`.

    `default_prompts(model_config)`, for teachers that only draw a closed set of prompts (the
    toys), is the prompt list a run uses when `data.prompts` is empty; it must not load weights
    (the Ray driver calls it before any worker starts)."""
    _BUILDERS[name] = builder
    if default_prompts is not None:
        _DEFAULT_PROMPTS[name] = default_prompts


def declare(name: str, module: str) -> None:
    """Declare that `module` registers `name` (for modules outside this file's table)."""
    _OWNERS[name] = module


def registered_names() -> list[str]:
    return sorted(set(_OWNERS) | set(_BUILDERS))


def _import_owner(name: str) -> None:
    if name not in _BUILDERS:
        if name not in _OWNERS:
            raise ConfigError(f"model.name: unknown teacher {name!r}; registered: {registered_names()}")
        importlib.import_module(_OWNERS[name])


def default_prompts(model: ModelConfig) -> list[str] | None:
    """The teacher's own prompts when it registered some (toys), else None (use `data.prompts`)."""
    _import_owner(model.name)
    make = _DEFAULT_PROMPTS.get(model.name)
    return make(model) if make is not None else None


def build_adapter(config: RunConfig | ModelConfig, sid: SiDConfig | None = None) -> TeacherAdapter:
    """The adapter for the model section of `config`; unknown names list the registered ones.

    Pass the whole RunConfig (or the model section and `sid`): FLUX adapters read
    `sid.generator_guidance` (the guidance embedding export folds into G) and validate the SiD
    guidance scales against `model.flux_guidance`. A bare ModelConfig without `sid` leaves the
    adapter on SiDConfig's defaults (a FLUX export then warns that it folds embedding 1).
    """
    if isinstance(config, RunConfig):
        if sid is not None and sid is not config.sid:
            raise ValueError("build_adapter: pass either a RunConfig or a ModelConfig with sid, not both")
        model, sid = config.model, config.sid
    else:
        model = config
    _import_owner(model.name)
    return _BUILDERS[model.name](model, sid=sid)


def build_adapter_on(config: RunConfig, device: torch.device | str) -> TeacherAdapter:
    """`build_adapter(config)` with its networks on `device`.

    Random weights (`model.init=random`) are created where they run: at 12 B parameters that is
    seconds on the GPU instead of minutes on the CPU. Loaded weights load, then move."""
    device = torch.device(device)
    place = device if config.model.init == "random" else contextlib.nullcontext()
    with place:
        adapter = build_adapter(config)
    if hasattr(adapter, "to"):
        adapter = adapter.to(device) or adapter
    return adapter
