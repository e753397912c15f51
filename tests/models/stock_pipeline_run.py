"""Run a stock diffusers pipeline on an exported folder in a fresh Python that never imports sid_ray.

Used by the SD3 and SANA export tests: what a user without sid_ray gets from the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

# argv: folder, pipeline class, output file, prompt, steps, size, seed, JSON of further call arguments.
# The seed goes to torch's global generator (StableDiffusion3Pipeline's scheduler draws the
# roll-out noise there) and to the call's generator (initial latents; SanaPipeline's steps too).
_SCRIPT = r"""
import json
import sys
import torch
import diffusers
from safetensors.torch import save_file

folder, pipeline_class, out, prompt, steps, size, seed, extra = sys.argv[1:]
pipe = getattr(diffusers, pipeline_class).from_pretrained(folder)
pipe.set_progress_bar_config(disable=True)
kwargs = dict(num_inference_steps=int(steps), height=int(size), width=int(size), guidance_scale=1.0)
kwargs.update(json.loads(extra))
if pipeline_class == "SanaPipeline":
    kwargs["use_resolution_binning"] = False  # tiny sizes are in no aspect-ratio bin
results = {}
for output_type in ("latent", "pt"):
    torch.manual_seed(int(seed))
    generator = torch.Generator().manual_seed(int(seed))
    results[output_type] = pipe(prompt, generator=generator, output_type=output_type, **kwargs).images
imported = sorted(m for m in sys.modules if m == "sid_ray" or m.startswith("sid_ray."))
assert not imported, f"the stock pipeline imported {imported}"
save_file({k: v.contiguous() for k, v in results.items()}, out)
"""


def run_stock_pipeline(
    folder: Path,
    pipeline_class: str,
    prompt: str,
    steps: int,
    size: int,
    seed: int,
    workdir: Path,
    call_arguments: dict | None = None,
) -> dict[str, torch.Tensor]:
    """{"latent": (1, C, h, w), "pt": (1, 3, H, W) images in [0, 1]} from a fresh interpreter;
    `call_arguments` (JSON-able) go to the pipeline call beside the usual ones."""
    out = workdir / "stock_outputs.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    cmd = [sys.executable, "-c", _SCRIPT, str(folder), pipeline_class, str(out), prompt, str(steps)]
    result = subprocess.run(
        [*cmd, str(size), str(seed), json.dumps(call_arguments or {})],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(out)
