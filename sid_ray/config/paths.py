"""Where sid_ray keeps files: the cache of derived artefacts and the names inside a checkpoint.

Both are read by more than one layer (the toys and data cache what they derive; the workers write
checkpoints that evaluation reads), so they live here, below all of them, spelled once.
"""

from __future__ import annotations

import os
from pathlib import Path

#: a checkpoint's counters (iteration, kimg, seed, MLflow run id), written by rank 0
STATE_FILE = "train_state.json"
#: the checkpoint's export folder: the consolidated generator and, in the final one, a pipeline
EXPORT_DIR = "export"
#: the generator module's state dict inside EXPORT_DIR
GENERATOR_WEIGHTS = "generator.safetensors"
#: the stock diffusers pipeline folder inside EXPORT_DIR (DiT teachers, final checkpoint)
PIPELINE_DIR = "pipeline"


def cache_dir() -> Path:
    """$SID_RAY_CACHE, else ~/.cache/sid_ray: where derived artefacts are kept (the toys' fitted
    copies, a built digits teacher, the digits classifier, encoded latents).

    Read on every call, not at import: tests and Ray workers set the variable after sid_ray loads.
    """
    return Path(os.environ.get("SID_RAY_CACHE", Path.home() / ".cache" / "sid_ray"))
