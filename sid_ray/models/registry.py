"""Teacher names -> adapter classes.

Each family module registers its names with `register`; `build_adapter(config)` imports the
module that owns the name only when it is asked for, so a toy run never imports diffusers.

An adapter class is built as `cls(model_config, sid=sid_config)`: the model section says what to
load, the SiD section what the adapter must know of the method (FLUX: the guidance scales it
checks against its guidance modes, and the generator's guidance embedding that export folds in).
Its class-level capabilities (`family`, `default_prompts`, `ensure_images`) answer without
weights, through `adapter_class(name)`.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING

import torch

from sid_ray.config.schema import ConfigError, ModelConfig, RunConfig, SiDConfig

if TYPE_CHECKING:
    from sid_ray.models.adapter import TeacherAdapter

# name -> module that registers it (imported lazily)
_OWNERS: dict[str, str] = {
    "flux-dev": "sid_ray.models.flux",
    "flux-tiny": "sid_ray.models.flux",
    "sd35-large": "sid_ray.models.sd3",
    "sd35-medium": "sid_ray.models.sd3",
    "sd3-medium": "sid_ray.models.sd3",
    "sd3-tiny": "sid_ray.models.sd3",
    "sana-600m": "sid_ray.models.sana",
    "sana-1600m": "sid_ray.models.sana",
    "sana-tiny": "sid_ray.models.sana",
    # the toy worlds (sid_ray.toys)
    "gmm-ring": "sid_ray.toys.gaussian_mixture_adapter",
    # generated exact mixtures (sid_ray.toys.mixture_family): presets, and any "gmm:<spec>" below
    "gmm-d2": "sid_ray.toys.gaussian_mixture_adapter",
    "gmm-d3": "sid_ray.toys.gaussian_mixture_adapter",
    "gmm-d5": "sid_ray.toys.gaussian_mixture_adapter",
    "gmm-d8": "sid_ray.toys.gaussian_mixture_adapter",
    "digits-flux": "sid_ray.toys.digits",
}
# name prefix -> module that registers a family of names spelled from that prefix (a teacher's
# whole spec in its name, e.g. "gmm:dim=5,modes=6,seed=1")
_PREFIX_OWNERS: dict[str, str] = {"gmm:": "sid_ray.toys.gaussian_mixture_adapter"}
_CLASSES: dict[str, type[TeacherAdapter]] = {}
_PREFIX_CLASSES: dict[str, type[TeacherAdapter]] = {}


def register(name: str, adapter: type[TeacherAdapter]) -> None:
    """Called by a family module at import: `adapter(model_config, sid=sid_config)` builds `name`."""
    _CLASSES[name] = adapter


def register_prefix(prefix: str, adapter: type[TeacherAdapter]) -> None:
    """Every name starting with `prefix` builds `adapter` (which reads the rest of the name)."""
    _PREFIX_CLASSES[prefix] = adapter


def declare(name: str, module: str) -> None:
    """Declare that `module` registers `name` (for modules outside this file's table)."""
    _OWNERS[name] = module


def registered_names() -> list[str]:
    return sorted(set(_OWNERS) | set(_CLASSES))


def adapter_class(name: str) -> type[TeacherAdapter]:
    """The class registered for `name` (its module imported now); unknown names list the known."""
    if name in _CLASSES:
        return _CLASSES[name]
    prefix = next((p for p in _PREFIX_OWNERS if name.startswith(p)), None)
    if prefix is not None:
        importlib.import_module(_PREFIX_OWNERS[prefix])
        return _PREFIX_CLASSES[prefix]
    if name not in _OWNERS:
        known = registered_names() + [f"{p}<spec>" for p in sorted(_PREFIX_OWNERS)]
        raise ConfigError(f"model.name: unknown teacher {name!r}; registered: {known}")
    importlib.import_module(_OWNERS[name])
    return _CLASSES[name]


def default_prompts(model: ModelConfig) -> list[str] | None:
    """The teacher's own prompts when it has some (toys), else None (use `data.prompts`)."""
    return adapter_class(model.name).default_prompts(model)


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
    return adapter_class(model.name)(model, sid=sid)


def build_adapter_on(config: RunConfig, device: torch.device | str) -> TeacherAdapter:
    """`build_adapter(config)` with its networks on `device`.

    Random weights (`model.init=random`) are created where they run: at 12 B parameters that is
    seconds on the GPU instead of minutes on the CPU. Loaded weights load, then move."""
    device = torch.device(device)
    place = device if config.model.init == "random" else contextlib.nullcontext()
    with place:
        adapter = build_adapter(config)
    return adapter.to(device)
