"""YAML load/dump, strict dict -> dataclass conversion and `--set a.b=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from sid_ray.config.schema import ConfigError, RunConfig


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check (and, for strings from the command line, parse) `value` as type `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for section {_type_name(tp)}, got {value!r}")
        return _build(tp, value, path)
    if origin is Literal:
        return _literal(value, typing.get_args(tp), path)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], path)
    if origin is list:
        return _list(value, typing.get_args(tp)[0], path)
    if tp in _SCALARS:
        return _SCALARS[tp](value, path)
    raise ConfigError(f"{path}: unsupported field type {tp!r}")


def _literal(value: Any, choices: tuple, path: str) -> Any:
    for choice in choices:
        if value == choice or (isinstance(value, str) and str(choice) == value):
            return choice
    raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}")


def _list(value: Any, item: Any, path: str) -> list:
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"{path}: expected true or false, got {value!r}")


def _parsed(value: str, parse) -> Any:
    try:
        return parse(value)
    except ValueError:
        return None


def _int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _parsed(value, int) is not None:
        return int(value)
    raise ConfigError(f"{path}: expected an integer, got {value!r}")


def _float(value: Any, path: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _parsed(value, float) is not None:
        return float(value)
    raise ConfigError(f"{path}: expected a number, got {value!r}")


def _str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{path}: expected a string, got {value!r}")


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}


def _build(cls: type, data: dict, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or "top level"
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{path}.{name}" if path else name)
    return cls(**kwargs)


def from_dict(data: dict, cls: type = RunConfig, validate: bool = True) -> Any:
    """Build a config from a (nested) dict; unknown keys and wrong types raise ConfigError."""
    config = _build(cls, data or {}, "")
    if validate:
        config.validate()
    return config


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def _set_path(config: Any, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    target = config
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(target)}
        if part not in fields:
            where = ".".join(parts[:i]) or "top level"
            raise ConfigError(
                f"--set {dotted}: unknown key {part!r} in {where}; valid keys: {sorted(fields)}"
            )
        if i == len(parts) - 1:
            hint = typing.get_type_hints(type(target))[part]
            if dataclasses.is_dataclass(hint):
                raise ConfigError(f"--set {dotted}: is a section; set one of its fields")
            setattr(target, part, _coerce(yaml.safe_load(raw) if _is_structured(raw) else raw, hint, dotted))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ConfigError(f"--set {dotted}: {'.'.join(parts[: i + 1])} is not a section")


def _is_structured(raw: str) -> bool:
    return raw.strip().startswith("[")


def parse_set_arguments(pairs: list[str]) -> list[tuple[str, str]]:
    """'a.b=value' strings -> (path, raw value) pairs."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected dotted.path=value")
        key, value = pair.split("=", 1)
        out.append((key.strip(), value))
    return out


def apply_overrides(config: Any, pairs: list[str]) -> Any:
    """Apply `--set` overrides in order, then validate the whole tree."""
    config = copy.deepcopy(config)  # the caller's config is left as it was
    for key, raw in parse_set_arguments(pairs):
        _set_path(config, key, raw)
    config.validate()
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The defaults, updated by a YAML file (if given), then by `--set` overrides."""
    data: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
    config = from_dict(data, validate=not overrides)
    return apply_overrides(config, overrides) if overrides else config


def dump_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (it loads back to an equal config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path
