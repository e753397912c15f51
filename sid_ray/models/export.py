"""Writing a distilled generator as a folder that stock diffusers samples in K steps.

The SiD roll-out (SID.md 3) at t_i = 1 - i/K is, per step,
    x0_hat = x_t - t_i v;   x_{t_{i+1}} = (1 - t_{i+1}) x0_hat + t_{i+1} eps_fresh,
with fresh noise, and the last step returns x0_hat. A deterministic Euler step
(x + (t_{i+1} - t_i) v) is a different sampler: it re-uses the predicted noise instead of
drawing new noise. Among diffusers 0.42.1's stock schedulers, `FlowMatchEulerDiscreteScheduler`
with `stochastic_sampling=True` computes exactly the roll-out step (its `step`:
`x0 = sample - sigma * v; prev = (1 - sigma_next) * x0 + sigma_next * randn`, with the terminal
sigma 0 making the last step return x0). `FlowMatchLCMScheduler` is equivalent but carries
scale-factor machinery we do not need; the Euler class is also what FLUX/SD3 folders name already.

The times must be exactly 1 - i/K whatever the pipeline passes:
- `shift=1`, `use_dynamic_shifting=False`: no resolution-dependent shift (FLUX's default is on).
- `shift_terminal=1/K`: stretches any schedule from 1 to its last value onto [1/K .. 1]. FluxPipeline
  passes sigmas linspace(1, 1/K, K) (left unchanged); pipelines that let the scheduler choose
  (SD3) get linspace(1, 0.001, K), which the stretch maps to linspace(1, 1/K, K) = 1 - i/K.
`check_rollout_schedule` verifies both at export time.

Noise (drawn in fp32, the scheduler upcasts) depends on the pipeline, so each family adapter
says where it comes from (`DiTAdapter.step_noise_source`) and the README tells users how to seed:
- "global": FluxPipeline and StableDiffusion3Pipeline call `scheduler.step` without a generator,
  so the fresh noise comes from torch's global generator; seed with `torch.manual_seed`, and
  `sid_ray.models.sampling.sid_sample(..., generator=None)` draws the same numbers.
- "call": SanaPipeline hands the call's `generator` to `scheduler.step`, so the initial latents and
  then every step's fresh noise come from that generator, in this order (`sid_sample` with one
  generator that first drew z does the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sid_ray.sid.rollout import rollout_times


def rollout_scheduler(num_steps: int) -> FlowMatchEulerDiscreteScheduler:
    """A stock scheduler whose K-step sampling is the SiD roll-out (see the module docstring)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=False,
        stochastic_sampling=True,
        # K = 1: the default schedule is already [1]; the stretch would divide by 1 - 1/K = 0
        shift_terminal=1.0 / num_steps if num_steps > 1 else None,
    )


def check_rollout_schedule(scheduler: FlowMatchEulerDiscreteScheduler, num_steps: int) -> None:
    """Raise if the scheduler's K-step sigmas differ from t_i = 1 - i/K (then 0)."""
    expected = torch.tensor([*rollout_times(num_steps), 0.0])
    flux_sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
    for kwargs in ({"num_inference_steps": num_steps}, {"sigmas": flux_sigmas}):
        scheduler.set_timesteps(**kwargs)
        if not torch.allclose(scheduler.sigmas.float(), expected, atol=1e-6):
            raise RuntimeError(
                f"scheduler sigmas {scheduler.sigmas.tolist()} for {kwargs} are not the SiD times "
                f"{expected.tolist()}: this diffusers' FlowMatchEulerDiscreteScheduler changed"
            )


USAGE = """# SiD {num_steps}-step generator (sid_ray export)

Teacher: `{teacher}`. Distilled with Score identity Distillation into a {num_steps}-step generator.

```python
import torch
from diffusers import {pipeline}
pipe = {pipeline}.from_pretrained("<this folder>", torch_dtype=torch.bfloat16)
{seeding}
image = pipe(prompt, num_inference_steps={num_steps}{extra}).images[0]
```
The scheduler (`FlowMatchEulerDiscreteScheduler`, stochastic_sampling=True, shift_terminal=1/{num_steps})
samples at t = 1 - i/{num_steps} with fresh noise at every step, as the generator was trained.
"""

# step_noise_source -> (the seeding line, arguments the call needs for it)
SEEDING: dict[str, tuple[str, str]] = {
    "global": (
        "torch.manual_seed(0)  # {pipeline} draws the initial and every step's fresh noise from "
        "torch's global generator",
        "",
    ),
    "call": (
        "generator = torch.Generator().manual_seed(0)  # {pipeline} draws the initial and every "
        "step's fresh noise from the call's generator",
        ", generator=generator",
    ),
}


def write_pipeline_folder(
    pipeline_class: type,
    components: dict[str, Any],
    folder: str | Path,
    num_steps: int,
    teacher: str = "",
    call_hint: str = "",
    step_noise_source: str = "global",
) -> Path:
    """Save `pipeline_class(**components)` with the roll-out scheduler and a usage README.

    `components` are the pipeline's modules (transformer = the generator as the family's plain
    transformer class, vae, text encoders, tokenizers); any "scheduler" entry is replaced.
    `call_hint` holds extra call arguments for the README; `step_noise_source` ("global" or
    "call") says how the pipeline seeds its per-step noise (see the module docstring).
    """
    if step_noise_source not in SEEDING:
        raise ValueError(f"step_noise_source must be one of {list(SEEDING)}, got {step_noise_source!r}")
    folder = Path(folder)
    scheduler = rollout_scheduler(num_steps)
    check_rollout_schedule(
        scheduler, num_steps
    )  # only set_timesteps state changes; the config saved is as built
    pipe = pipeline_class(**{**components, "scheduler": scheduler})
    pipe.save_pretrained(folder, safe_serialization=True)
    seeding, seed_argument = SEEDING[step_noise_source]
    name = pipeline_class.__name__
    readme = USAGE.format(
        num_steps=num_steps,
        teacher=teacher,
        pipeline=name,
        seeding=seeding.format(pipeline=name),
        extra=seed_argument + call_hint,
    )
    (folder / "README.md").write_text(readme)
    return folder
