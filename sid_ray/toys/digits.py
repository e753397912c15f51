"""The digits teacher ("digits-flux"): the FLUX adapter on the project's own tiny FLUX folder.

The folder is a stock FluxPipeline trained by `sid_ray.toys.digits_teacher` on sklearn's
digits (16x16 images, prompts "a handwritten seven"). It ships in the repository at
`SHIPPED_FOLDER` (under 3 MB), so a run finds it without training; when that folder is absent
(a trimmed install, a changed recipe) it is built on first use into the cache
(`$SID_RAY_CACHE`, else ~/.cache/sid_ray), a few minutes on 2 cores.

Everything else is FLUX as the FLUX adapter implements it; this teacher has no guidance
embedding, so a guidance scale is real two-pass classifier-free guidance.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from sid_ray.config.paths import cache_dir
from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.flux import FluxAdapter
from sid_ray.models.registry import register
from sid_ray.toys.digits_data import DIGITS_RESOLUTION, NUM_DIGITS, digit_of_prompt, digit_prompt

SHIPPED_FOLDER = Path(__file__).resolve().parent.parent / "assets" / "digits-flux"


def digits_teacher_folder(build_if_missing: bool = True) -> Path:
    """The shipped teacher folder, else the cached build (trained now if needed, once per machine)."""
    if (SHIPPED_FOLDER / "model_index.json").is_file():
        return SHIPPED_FOLDER
    from sid_ray.toys.digits_teacher import DigitsTeacherRecipe, build_digits_teacher

    recipe = DigitsTeacherRecipe()
    folder = cache_dir() / f"digits-flux-{recipe.key()}"
    if (folder / "model_index.json").is_file():
        return folder
    if not build_if_missing:
        raise ConfigError(
            f"model.path: the digits teacher is neither at {SHIPPED_FOLDER} nor at {folder}; "
            "run scripts/train_digits_teacher.py"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    # one builder per machine: Ray workers starting together wait for the first one's folder
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "model_index.json").is_file():
            partial = folder.with_name(folder.name + f".partial{os.getpid()}")
            build_digits_teacher(partial, recipe)
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    return folder


class DigitsFluxAdapter(FluxAdapter):
    """FLUX adapter on the digits teacher; `model.path` empty = the shipped (or cached) folder."""

    name = "digits-flux"
    default_path = ""

    def __init__(self, config: ModelConfig, components: dict[str, Any] | None = None, **kwargs):
        if config.resolution != DIGITS_RESOLUTION:
            raise ConfigError(
                f"model.resolution: the digits teacher draws {DIGITS_RESOLUTION}x{DIGITS_RESOLUTION} "
                f"images; set model.resolution={DIGITS_RESOLUTION} (got {config.resolution})"
            )
        if components is None and not config.path:
            # a copy: the caller's config keeps "" (the data cache keys and saved configs use it)
            config = dataclasses.replace(config, path=str(digits_teacher_folder()))
        super().__init__(config, components, **kwargs)

    @classmethod
    def released_config_for(cls, name: str) -> None:
        """A toy: nothing to size (the class would otherwise inherit FLUX.1-dev's architecture)."""
        return None

    @classmethod
    def teacher_folder(cls, config: ModelConfig) -> str:
        return config.path or str(digits_teacher_folder())

    @staticmethod
    def digit_of(prompt: str) -> int:
        """The digit a prompt asks for (the alignment metric's label)."""
        return digit_of_prompt(prompt)

    @classmethod
    def default_prompts(cls, model: ModelConfig) -> list[str]:
        """The ten prompts the digits teacher was trained on ("a handwritten zero" ... "nine")."""
        return [digit_prompt(d) for d in range(NUM_DIGITS)]

    @classmethod
    def ensure_images(cls, images: str) -> None:
        """A folder `data.images` gets the digits world's image-text shards on first use (the
        data-aided demo); a glob or brace pattern names shards the user made, read as they are."""
        if not any(c in images for c in "*?{"):
            from sid_ray.toys.digits_shards import ensure_digits_shards

            ensure_digits_shards(images)


register("digits-flux", DigitsFluxAdapter)
