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
A generator trained at shifted times (`sid.rollout_time_shift` s: t_i = s u / (1 + (s - 1) u), u = 1 - i/K)
gets `shift=s` and `shift_terminal` = its last time: the scheduler shifts FluxPipeline's
linspace(1, 1/K, K) to exactly the trained times, and the stretch is then the identity. The other
path cannot be made exact (the scheduler shifts its default range once at construction and once
more per call), so the README's call passes `sigmas=linspace(1, 1/K, K)` for every pipeline.

Noise (drawn in fp32, the scheduler upcasts) depends on the pipeline, so each family adapter
says where it comes from (`DiTAdapter.step_noise_source`) and the README tells users how to seed:
- "global": FluxPipeline and StableDiffusion3Pipeline call `scheduler.step` without a generator,
  so the fresh noise comes from torch's global generator; seed with `torch.manual_seed`, and
  `sid_ray.models.sampling.sid_sample(..., generator=None)` draws the same numbers.
- "call": SanaPipeline hands the call's `generator` to `scheduler.step`, so the initial latents and
  then every step's fresh noise come from that generator, in this order (`sid_sample` with one
  generator that first drew z does the same).

The transformer is never built for the export: G's weights are streamed, one tensor at a time,
from the modules already in memory (`StreamedTransformer`; LoRA merged per layer by
`sid_ray.models.lora.merged_state_tensors`, FLUX's guidance folded by its adapter) into
safetensors shards in diffusers' naming, so a 12 B-parameter generator costs about one shard of
CPU memory to write, not a second copy of the model. A ZeRO-3 partitioned generator is streamed
the same way, each submodule's parameters gathered only while they are read (`Gather`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import save_file
from torch import nn

from sid_ray.sid.rollout import rollout_times

#: the most bytes of tensors in one safetensors shard of an exported transformer (diffusers' own
#: default is 10 GB; 5 GB bounds the CPU memory the export holds at once); tests lower it
SHARD_MAX_BYTES = 5 * 1024**3

#: opens a context in which the given parameters hold their full values; `no_gather` for plain
#: modules, a DeepSpeed ZeRO-3 gather in sid_ray.train.checkpoint (the models layer never imports
#: deepspeed). Every rank of a partitioned module must enter the same contexts in the same order.
Gather = Callable[[list[nn.Parameter]], contextlib.AbstractContextManager]


def no_gather(params: list[nn.Parameter]) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class StreamedTransformer:
    """G as a transformer of the teacher's class, described instead of built.

    `tensors` yields (key, tensor) in the class's own state-dict naming, lazily: a tensor may be
    a view of a parameter gathered only until the next one is requested, so keep a copy.
    """

    class_name: str
    config: Mapping[str, Any]
    tensors: Iterable[tuple[str, torch.Tensor]]


def rollout_scheduler(num_steps: int, time_shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    """A stock scheduler whose K-step sampling is the SiD roll-out (see the module docstring)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=time_shift,
        use_dynamic_shifting=False,
        stochastic_sampling=True,
        # K = 1: the default schedule is already [1]; the stretch would divide by 1 - 1/K = 0
        shift_terminal=rollout_times(num_steps, time_shift)[-1] if num_steps > 1 else None,
    )


def pipeline_sigmas(num_steps: int) -> list[float]:
    """The sigmas FluxPipeline passes by default, linspace(1, 1/K, K), before the scheduler's shift."""
    return np.linspace(1.0, 1 / num_steps, num_steps).tolist()


def check_rollout_schedule(
    scheduler: FlowMatchEulerDiscreteScheduler, num_steps: int, time_shift: float = 1.0
) -> None:
    """Raise if the scheduler's K-step sigmas differ from the roll-out times (then 0): for the
    default call and for `sigmas=pipeline_sigmas(K)`, or only the latter for a shifted schedule."""
    expected = torch.tensor([*rollout_times(num_steps, time_shift), 0.0])
    calls = [{"sigmas": pipeline_sigmas(num_steps)}]
    if time_shift == 1.0:
        calls.append({"num_inference_steps": num_steps})
    for kwargs in calls:
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
The scheduler (`FlowMatchEulerDiscreteScheduler`, stochastic_sampling=True, {scheduler_settings})
samples at t = {times} with fresh noise at every step, as the generator was trained.
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
    transformer: StreamedTransformer,
    folder: str | Path,
    num_steps: int,
    teacher: str = "",
    call_arguments: dict[str, Any] | None = None,
    step_noise_source: str = "global",
    time_shift: float = 1.0,
) -> Path:
    """Save a `pipeline_class` folder: G's streamed transformer, the roll-out scheduler, the other
    `components` (vae, text encoders, tokenizers) and a usage README.

    Any "transformer" or "scheduler" entry of `components` is replaced. `call_arguments` are the
    call's keyword arguments that the README writes out; `step_noise_source` ("global" or "call") says how the pipeline
    seeds its per-step noise (see the module docstring); `time_shift` is `sid.rollout_time_shift`,
    the training times' shift (1: t = 1 - i/K). The transformer is written first: it is
    the part a ZeRO-3 export gathers collectively, so the other ranks wait the least.
    """
    if step_noise_source not in SEEDING:
        raise ValueError(f"step_noise_source must be one of {list(SEEDING)}, got {step_noise_source!r}")
    folder = Path(folder)
    scheduler = rollout_scheduler(num_steps, time_shift)
    # only set_timesteps state changes; the config saved is as built
    check_rollout_schedule(scheduler, num_steps, time_shift)
    write_transformer(transformer, folder / "transformer")
    pipe = pipeline_class(**{**components, "transformer": None, "scheduler": scheduler})
    # save_pretrained warns that transformer=None "cannot be saved": it was written above
    with _logger_level("diffusers.pipelines.pipeline_utils", logging.ERROR):
        pipe.save_pretrained(folder, safe_serialization=True)
    _name_component(folder, "transformer", transformer.class_name)
    seeding, seed_argument = SEEDING[step_noise_source]
    arguments = dict(call_arguments or {})
    if time_shift != 1.0:  # only FluxPipeline's default sigmas reach the shifted times; pass them always
        arguments["sigmas"] = pipeline_sigmas(num_steps)
    name = pipeline_class.__name__
    readme = USAGE.format(
        num_steps=num_steps,
        teacher=teacher,
        pipeline=name,
        seeding=seeding.format(pipeline=name),
        extra=seed_argument + "".join(f", {k}={v!r}" for k, v in arguments.items()),
        scheduler_settings=f"shift={time_shift}, shift_terminal={scheduler.config.shift_terminal}",
        times=", ".join(f"{t:.4g}" for t in rollout_times(num_steps, time_shift)),
    )
    (folder / "README.md").write_text(readme)
    return folder


def write_transformer(transformer: StreamedTransformer, folder: str | Path) -> Path:
    """A model folder `transformer.class_name.from_pretrained(folder)` loads: config.json and the
    safetensors weights, named as diffusers' `ModelMixin.save_pretrained` names them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_model_config(transformer.class_name, transformer.config, folder)
    write_weights(transformer.tensors, folder)
    return folder


# config keys diffusers adds on loading (the teacher's folder) or never saves
_UNSAVED_CONFIG_KEYS = (
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
    "_ignore_files",
    "_use_default_values",
    "_pre_quantization_dtype",
)


def write_model_config(class_name: str, config: Mapping[str, Any], folder: Path) -> None:
    """config.json as diffusers' `ConfigMixin.save_config` writes it, without building the model."""
    body = {k: v for k, v in config.items() if k not in _UNSAVED_CONFIG_KEYS}
    body |= {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    (folder / "config.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


def write_weights(tensors: Iterable[tuple[str, torch.Tensor]], folder: Path) -> None:
    """One `diffusion_pytorch_model.safetensors`, or shards of at most `SHARD_MAX_BYTES` named
    `diffusion_pytorch_model-0000i-of-0000N.safetensors` with their index, as diffusers writes them.

    The shards are cut greedily while streaming (one shard of CPU copies in memory at a time), so
    their count is known at the end: they are written under temporary names and renamed.
    """
    stem = SAFETENSORS_WEIGHTS_NAME.removesuffix(".safetensors")
    for old in folder.glob(f"{stem}*.safetensors*"):  # a previous export's shards or index
        old.unlink()
    written = [
        _save_shard(shard, folder / f"{stem}.safetensors.part{i}") for i, shard in enumerate(_shards(tensors))
    ]
    if len(written) == 1:
        written[0][0].rename(folder / SAFETENSORS_WEIGHTS_NAME)
        return
    weight_map, total = {}, 0
    for i, (path, keys, nbytes) in enumerate(written, start=1):
        name = f"{stem}-{i:05d}-of-{len(written):05d}.safetensors"
        path.rename(folder / name)
        weight_map |= dict.fromkeys(keys, name)
        total += nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _shards(tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """CPU copies of `tensors` in groups of at most `SHARD_MAX_BYTES` (a larger tensor alone)."""
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for key, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > SHARD_MAX_BYTES:
            yield shard
            shard, size = {}, 0
        # a copy: the streamed tensor may be a gathered view released at the next step
        shard[key] = tensor.detach().to("cpu", copy=True).contiguous()
        size += nbytes
    if shard:
        yield shard


def _save_shard(shard: dict[str, torch.Tensor], path: Path) -> tuple[Path, list[str], int]:
    save_file(shard, path, metadata={"format": "pt"})
    return path, list(shard), sum(t.numel() * t.element_size() for t in shard.values())


def _name_component(folder: Path, name: str, class_name: str) -> None:
    """Record `name` in model_index.json as the diffusers class `class_name` (a pipeline saved
    with that component None records [null, null], which `from_pretrained` would not load)."""
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    index[name] = ["diffusers", class_name]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
