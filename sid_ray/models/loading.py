"""Load the parts of a diffusers pipeline folder that a run needs, with one clear error.

A teacher is a diffusers pipeline folder (local) or a hub id (downloaded with huggingface_hub,
safetensors and configs only). `load_components(path, ["transformer", "vae", ...], dtype)`
reads `model_index.json` to learn each part's class, checks that every requested part is there
(with safetensors weights) BEFORE loading anything, and raises `ModelLoadError` naming the folder
and what is missing. Classes come only from diffusers and transformers, weights only from
safetensors, and remote code is never trusted.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sid_ray.config.schema import ConfigError

# Parts with weights; the others (tokenizers, scheduler) are configs and vocabularies.
WEIGHTED_PARTS_PREFIXES = ("transformer", "vae", "text_encoder", "unet", "image_encoder")
ALLOWED_LIBRARIES = ("diffusers", "transformers")
_EXPECTED = "expected a diffusers pipeline folder: model_index.json, transformer/, vae/, text_encoder*/"
# Hub downloads: configs, vocabularies and safetensors only (never .bin / .pt / .ckpt).
_HUB_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")


class ModelLoadError(ConfigError):
    """A teacher (or generator) folder is missing, incomplete or not loadable."""


def _is_hub_id(path: str) -> bool:
    # "owner/name" that is not a local path
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not path.startswith((".", "~")) and not Path(path).exists()


def resolve_folder(path: str | Path, parts: Sequence[str] = (), role: str = "teacher") -> Path:
    """A local folder for `path`: itself, or a hub snapshot of only the requested parts."""
    path = str(path)
    if not path:
        raise ModelLoadError(
            f"{role} folder is empty: set model.path to a diffusers pipeline folder or hub id"
        )
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise ModelLoadError(f"{role} folder {path} is a file, not a folder ({_EXPECTED})")
    if not _is_hub_id(path):
        raise ModelLoadError(f"{role} folder {path} does not exist ({_EXPECTED})")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(path, allow_patterns=hub_patterns(parts)))
    except Exception as err:  # network, auth (HF_TOKEN) or unknown repo: one message, the cause kept
        if constants.is_offline_mode():
            where = f"HF_HUB_OFFLINE is set and the hub cache {constants.HF_HUB_CACHE} does not hold it"
        else:
            where = f"{type(err).__name__}: {err}"
        raise ModelLoadError(
            f"{role} {path} is neither a local folder nor a downloadable hub repository "
            f"({where}); check the path, network and HF_TOKEN"
        ) from err


def hub_patterns(parts: Sequence[str]) -> list[str]:
    """`snapshot_download` allow-patterns: model_index.json and the configs, vocabularies and
    safetensors of `parts` only (a hub repo often also holds .bin/.ckpt copies and other parts)."""
    return ["model_index.json"] + [f"{part}/{pattern}" for part in parts for pattern in _HUB_PATTERNS]


def read_part_config(folder: Path, part: str) -> dict[str, Any]:
    """`part/config.json` of a pipeline folder, or {} when absent or unreadable (then
    `load_components` reports the problem), read without loading any weights."""
    try:
        return json.loads((folder / part / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_model_index(folder: Path, role: str = "teacher") -> dict[str, Any]:
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{role} folder {folder} has no model_index.json ({_EXPECTED})")
    try:
        return json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{role} folder {folder}: model_index.json is not valid JSON ({err})") from err


def check_parts(folder: Path, parts: Sequence[str], role: str = "teacher") -> dict[str, tuple[str, str]]:
    """(library, class name) of each part; raises one error listing every missing piece."""
    index = read_model_index(folder, role)
    problems, classes = [], {}
    for part in parts:
        entry = index.get(part)
        sub = folder / part
        if not sub.is_dir():
            problems.append(f"no {part}/ subfolder")
            continue
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] and entry[1]):
            problems.append(f"model_index.json does not name the class of {part!r}")
            continue
        if entry[0] not in ALLOWED_LIBRARIES:
            problems.append(
                f"{part} comes from library {entry[0]!r}; only {list(ALLOWED_LIBRARIES)} are loaded"
            )
            continue
        if part.startswith(WEIGHTED_PARTS_PREFIXES) and not any(sub.glob("*.safetensors")):
            other = sorted(p.name for p in sub.iterdir() if p.suffix in (".bin", ".pt", ".ckpt", ".pth"))
            hint = f" (found {other}: convert them to safetensors)" if other else ""
            problems.append(f"no safetensors weights in {part}/{hint}")
            continue
        classes[part] = (entry[0], entry[1])
    if problems:
        raise ModelLoadError(f"{role} folder {folder} has " + "; ".join(problems) + f" ({_EXPECTED})")
    return classes


def load_components(
    path: str | Path,
    parts: Sequence[str],
    dtype: torch.dtype = torch.float32,
    role: str = "teacher",
) -> dict[str, Any]:
    """{part: loaded object} for the requested parts of a pipeline folder or hub id.

    Models load in `dtype` (bf16/fp32), in eval mode and frozen (callers unfreeze trained copies).
    Tokenizers and the scheduler load from their configs.
    """
    folder = resolve_folder(path, parts, role)
    classes = check_parts(folder, parts, role)
    loaded: dict[str, Any] = {}
    for part, (library, class_name) in classes.items():
        cls = getattr(importlib.import_module(library), class_name, None)
        if cls is None:
            raise ModelLoadError(
                f"{role} folder {folder}: {part} needs {library}.{class_name}, which this {library} lacks"
            )
        kwargs: dict[str, Any] = {"subfolder": part}
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            kwargs.update(use_safetensors=True, dtype=dtype)  # `torch_dtype` is deprecated in both
            if library == "transformers":
                kwargs["trust_remote_code"] = False
        try:
            obj = cls.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"{role} folder {folder}: cannot load {part} ({class_name}): {err}") from err
        if isinstance(obj, torch.nn.Module):
            obj.eval().requires_grad_(False)
        loaded[part] = obj
    return loaded


def torch_dtype(name: str) -> torch.dtype:
    """ModelConfig.dtype ("float32", "bfloat16", ...) -> torch dtype."""
    return {
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
        "float64": torch.float64,
    }[name]
