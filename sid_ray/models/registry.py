"""Teacher names -> adapter builders.

Each family module registers its names with `register`; `build_adapter(config)` imports the
module that owns the name only when it is asked for, so a toy run never imports diffusers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sid_ray.config.schema import ConfigError, ModelConfig

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
_BUILDERS: dict[str, Callable] = {}


def register(name: str, builder: Callable) -> None:
    """Called by a family module at import: `builder(model_config) -> TeacherAdapter`."""
    _BUILDERS[name] = builder


def declare(name: str, module: str) -> None:
    """Declare that `module` registers `name` (for modules outside this file's table)."""
    _OWNERS[name] = module


def registered_names() -> list[str]:
    return sorted(set(_OWNERS) | set(_BUILDERS))


def build_adapter(config: ModelConfig):
    """The adapter for `config.name`; unknown names list the registered ones."""
    if config.name not in _BUILDERS:
        if config.name not in _OWNERS:
            raise ConfigError(
                f"model.name: unknown teacher {config.name!r}; registered: {registered_names()}"
            )
        importlib.import_module(_OWNERS[config.name])
    return _BUILDERS[config.name](config)
