"""One typed configuration tree; YAML files under configs/ are its 1:1 serialisation."""

from sid_ray.config.io import (
    ConfigError,
    apply_overrides,
    config_to_dict,
    dump_config,
    from_dict,
    load_config,
    parse_set_arguments,
)
from sid_ray.config.schema import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SiDConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "SiDConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "dump_config",
    "from_dict",
    "load_config",
    "parse_set_arguments",
]
