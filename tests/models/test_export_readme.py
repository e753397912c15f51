"""The export folder's README, run exactly as written, in a Python that has never seen sid_ray.

A user copies the README's snippet: it must carry every call-time argument the generator needs
(the run's resolution, the text length its prompts were encoded at), taken from the adapter's
own values. Without them a stock FluxPipeline samples at its released 1024 px and pads prompts to
512 T5 tokens, past what the digits teacher's tokenizer (24) ever produced in training.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from sid_ray.config.schema import LoraConfig, ModelConfig, RunConfig
from sid_ray.models.registry import build_adapter

RESOLUTION = 16


def readme_snippet(folder) -> str:
    text = (folder / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_snippet_samples_at_the_runs_resolution_and_text_length(tiny_flux_folder, tmp_path):
    model = ModelConfig(
        name="flux-tiny", path=str(tiny_flux_folder), resolution=RESOLUTION, lora=LoraConfig(mode="full")
    )
    adapter = build_adapter(RunConfig(model=model))
    folder = adapter.export(adapter.make_trainable_copy("generator"), tmp_path / "export", num_steps=4)
    snippet = readme_snippet(folder)
    assert f"max_sequence_length={adapter.text_max_length}" in snippet, snippet
    assert f"height={RESOLUTION}, width={RESOLUTION}" in snippet, snippet

    program = "\n".join(
        [
            "import sys",
            "prompt = sys.argv[1]",
            snippet.replace('"<this folder>"', repr(str(folder))),
            "assert not any(m.startswith('sid_ray') for m in sys.modules)",
            "image.save(sys.argv[2])",
        ]
    )
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    images = []
    for i, prompt in enumerate(["a red cat", "two dogs"]):
        out = tmp_path / f"image{i}.png"
        run = subprocess.run(
            [sys.executable, "-c", program, prompt, str(out)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        images.append(out.read_bytes())
    from PIL import Image

    assert Image.open(tmp_path / "image0.png").size == (RESOLUTION, RESOLUTION)
    assert images[0] != images[1]  # the prompt reaches the picture (same seed, other text)
