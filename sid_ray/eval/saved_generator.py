"""A saved generator, found and loaded for evaluation: a run folder, a checkpoint, its
`generator.safetensors`, or an exported diffusers pipeline folder.

A pipeline folder is loaded by the teacher's own adapter with `model.path` pointing at it: its
transformer is the generator, sampled by the same K-step roll-out as in training. Weights files
go into a trainable copy of the run's teacher, as the workers' export wrote them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from sid_ray.config.io import load_config
from sid_ray.config.paths import EXPORT_DIR, GENERATOR_WEIGHTS, PIPELINE_DIR, STATE_FILE
from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.models.loading import torch_dtype
from sid_ray.models.registry import build_adapter


@dataclass
class SavedGenerator:
    kind: str  # "pipeline" or "weights"
    path: Path  # the pipeline folder or the weights file
    run_dir: Path | None  # the training run's folder, when the target is inside one
    training_run_id: str  # the MLflow run that trained it, when its checkpoints say


def _latest_weights(run_dir: Path) -> Path | None:
    found = sorted(run_dir.glob(f"checkpoint_*/{EXPORT_DIR}/{GENERATOR_WEIGHTS}"))
    return found[-1] if found else None


def _run_dir_of(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if (folder / "config.yaml").is_file() and any(folder.glob(f"checkpoint_*/{STATE_FILE}")):
            return folder
    return None


def _training_run_id(run_dir: Path | None) -> str:
    """The MLflow run id the run's newest checkpoint holds."""
    if run_dir is None:
        return ""
    states = sorted(run_dir.glob(f"checkpoint_*/{STATE_FILE}"))
    return json.loads(states[-1].read_text()).get("mlflow_run_id", "") if states else ""


def find_saved_generator(target: str | Path) -> SavedGenerator:
    """What `target` names: a pipeline folder (model_index.json), a weights file, a checkpoint
    (its export), or a run folder (its export/pipeline, else its newest checkpoint's weights)."""
    path = Path(target).expanduser().resolve()
    candidates = [
        ("pipeline", path if (path / "model_index.json").is_file() else None),
        ("weights", path if path.is_file() and path.suffix == ".safetensors" else None),
        ("weights", path / EXPORT_DIR / GENERATOR_WEIGHTS),
        ("pipeline", path / EXPORT_DIR / PIPELINE_DIR),
        ("weights", _latest_weights(path) if path.is_dir() else None),
    ]
    for kind, found in candidates:
        if found is not None and (found / "model_index.json" if kind == "pipeline" else found).exists():
            run_dir = _run_dir_of(path)
            return SavedGenerator(kind, found, run_dir, _training_run_id(run_dir))
    raise ConfigError(
        f"{target}: not a pipeline folder, a generator.safetensors, a checkpoint with an export or "
        "a run folder with one"
    )


def run_config_of(saved: SavedGenerator, config_path: str | None, overrides: list[str]) -> RunConfig:
    """The training run's config (its run folder's config.yaml unless `config_path`), overridden."""
    if config_path is None and saved.run_dir is None:
        raise ConfigError(f"{saved.path} is not inside a run folder: pass --config (the run's config)")
    return load_config(config_path or saved.run_dir / "config.yaml", overrides)


def load_saved_generator(saved: SavedGenerator, config: RunConfig) -> tuple[object, torch.nn.Module]:
    """(the adapter that encodes and decodes, the generator module) on the CPU or config's GPU."""
    if saved.kind == "pipeline":
        model = dataclasses.replace(config.model, path=str(saved.path), init="pretrained")
        adapter = build_adapter(dataclasses.replace(config, model=model))
        generator = adapter.teacher
    else:
        adapter = build_adapter(config)
        generator = adapter.make_trainable_copy("generator")
        generator.load_state_dict(load_file(saved.path))
    device = "cuda" if config.train.use_gpu and torch.cuda.is_available() else "cpu"
    adapter.to(device)
    return adapter, generator.to(device).eval()


def sampling_dtype(config: RunConfig) -> torch.dtype:
    """The dtype the workers sample in (their latents' dtype), so both evaluations match."""
    return torch.bfloat16 if config.train.mixed_precision == "bf16" else torch_dtype(config.model.dtype)
