"""Memory per GPU of a run, from its config and the teacher's architecture (no weights loaded).

`jobs/plan.py` prints it and the launcher refuses a GPU run that cannot fit
(`train.gpu_memory_gib`). The model, per GPU of N (P = transformer parameters, L = one LoRA
adapter's, w = bytes per weight of `model.dtype`; DeepSpeed as `sid_ray.train.ds_config` and
`sid_ray.train.parallelize.zero_plan` set it up):

- weights. full: T, F and G under ZeRO-3, 3 P w / N (F and G replicated at `train.zero_stage=2`).
  lora: T under ZeRO-3 (P w / N), F's and G's base copies replicated (ZeRO-2 shards only what an
  engine trains: 2 P w) and their adapters (2 L w). shared_base: one replicated base (P w) and
  two adapters (2 L w).
  Every worker also holds the VAE and, unless prompts come from `data.embedding_cache` (or
  `model.load_text_encoders=false`), the text encoders, replicated in w bytes (FLUX.1-dev: T5-XXL
  and CLIP-L, 9.1 GiB in bf16; `model.init=random` builds tiny ones, counted as nothing).
- optimiser: Adam's two moments, plus fp32 master weights under `train.mixed_precision=bf16`
  (12 bytes per trained parameter; 2 w without a master copy), sharded over N, for F and G.
- gradients. ZeRO-3 (full at stage 3) keeps each engine's fp32 gradient partition (4 bytes / N,
  F and G). ZeRO-2 (the LoRA modes; full at stage 2) frees an engine's gradients after its step,
  so only the network being back-propagated holds them: its autograd gradients (L w) and its
  fp32 partition (4 L / N).
- working set: what no sharding removes from a ZeRO-3 engine: up to two gathered blocks
  (`stage3_max_live_parameters`) and one reduce bucket, in w bytes, per ZeRO-3 engine.
- activations, per image of the micro-batch. G's backward is the peak: G's last roll-out step,
  T and F all run with gradient to their input (shared/SID.md 3), so three networks' activations
  are live. A checkpointed network keeps each block's input (tokens x width values per block);
  the block being recomputed holds its full set, BLOCK_ACTIVATION_WIDTHS x tokens x width values.
  `checkpoint_policy=frozen` leaves G's blocks un-checkpointed; no checkpointing leaves all three.

BLOCK_ACTIVATION_WIDTHS is the one measured constant: the "frozen" minus "all" peaks of
benchmarks/results/flux-dev_h200_2026-12-02.md (FLUX.1-dev 512 x 4: 33.7 GiB; 1024 x 2: 50.6 GiB)
are one network's 57 blocks x (widths - 1) x tokens x 3072 x 2 bytes x images, giving 16.8 at
both sizes (SD3.5-Large 1024 x 2: 16.3). Everything else is counted. Left out: the CUDA context,
NCCL buffers and the allocator's fragmentation; `RESERVED_GIB` stands for them in the fit check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.models.architecture import Architecture, describe
from sid_ray.train.ds_config import BUCKET_ELEMENTS, DIT_BLOCK_PARAMS

GIB = 2**30
BLOCK_ACTIVATION_WIDTHS = 17
# CUDA context, NCCL communicators and allocator fragmentation: not in the model's total, kept
# free on every GPU by the fit check
RESERVED_GIB = 3.0
# the largest cluster `smallest_gpu_count` looks at
MAX_GPUS = 1024
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}


@dataclass(frozen=True)
class MemoryPlan:
    """GiB per GPU of one run on `gpus` GPUs (`total` excludes RESERVED_GIB)."""

    architecture: Architecture
    mode: str
    gpus: int
    weights: float
    optimizer: float
    gradients: float
    working_set: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.optimizer + self.gradients + self.working_set + self.activations

    def fits(self, gpu_memory_gib: float) -> bool:
        return self.total + RESERVED_GIB <= gpu_memory_gib


def _state_bytes(config: RunConfig) -> tuple[int, int, int]:
    """(weight, optimiser, gradient-partition) bytes per parameter."""
    weight = DTYPE_BYTES[config.model.dtype]
    if config.train.mixed_precision == "bf16":
        return weight, 4 + 8, 4  # fp32 master + Adam's moments; fp32 gradient partition
    return weight, 2 * weight, weight


def _activations(config: RunConfig, arch: Architecture, weight: int) -> float:
    """Bytes of the three networks' activations at G's backward, for one micro-batch."""
    per_block = arch.tokens * arch.width * weight * config.train.micro_batch_size
    stored, full = arch.blocks * per_block, arch.blocks * BLOCK_ACTIVATION_WIDTHS * per_block
    model = config.model
    if not model.gradient_checkpointing:
        return full * _generator_steps_held(config.sid) + 2 * full
    recompute = BLOCK_ACTIVATION_WIDTHS * per_block  # the one block being recomputed
    if model.checkpoint_policy == "frozen":
        # G keeps its activations but in checkpoint_trained_share of its blocks; T and F are checkpointed
        share = model.checkpoint_trained_share
        g = (1 - share) * full + share * stored
    else:
        g = stored
    return g * _generator_steps_held(config.sid) + 2 * stored + recompute


def _generator_steps_held(sid) -> int:
    """Roll-out steps whose G activations are live at once in G's backward: the last one, or all
    K when a gradient share flows back through the earlier steps and they are not recomputed."""
    held = sid.earlier_steps_gradient > 0 and not sid.earlier_steps_recompute
    return sid.num_steps if held else 1


def _zero3_working_set(arch: Architecture, weight: int, engines: int) -> float:
    live = min(2 * DIT_BLOCK_PARAMS, arch.parameters)
    return engines * (live + min(BUCKET_ELEMENTS, arch.parameters)) * weight


def _loads_text_encoders(config: RunConfig) -> bool:
    """Whether the workers hold text encoders (`sid_ray.train.cached_prompts.worker_config`)."""
    cached = bool(config.data.embedding_cache) and not config.data.images
    return config.model.load_text_encoders and not cached


def _network_bytes(config: RunConfig, arch: Architecture, gpus: int) -> dict[str, float]:
    """Weights, optimiser, gradients and ZeRO-3 working set in bytes per GPU (the module docstring).

    The ZeRO stages are the worker's (`sid_ray.train.parallelize.zero_plan`): F and G at
    `train.zero_stage` in full mode and at stage 2 in the LoRA modes; T a ZeRO-3 engine unless
    it is the shared base."""
    weight, optimizer, partition = _state_bytes(config)
    mode, p, lora = config.model.lora.mode, arch.parameters, arch.lora_parameters
    stage = config.train.zero_stage if mode == "full" else 2
    trained = p if mode == "full" else lora  # parameters each of F and G trains
    teacher = 0.0 if mode == "shared_base" else p * weight / gpus
    if mode == "full":
        copies = 2 * p * weight / (gpus if stage == 3 else 1)
    else:  # the adapters, on two base copies (lora) or on the one shared base
        copies = (2 if mode == "lora" else 1) * p * weight + 2 * lora * weight
    if stage == 3:
        gradients = 2 * trained * partition / gpus
    else:  # ZeRO-2 frees an engine's gradients after its step: one network's at a time
        gradients = trained * weight + trained * partition / gpus
    zero3_engines = (2 if stage == 3 else 0) + (0 if mode == "shared_base" else 1)
    frozen_parts = arch.vae_parameters + (arch.text_encoder_parameters if _loads_text_encoders(config) else 0)
    return {
        "weights": teacher + copies + frozen_parts * weight,
        "optimizer": 2 * trained * optimizer / gpus,
        "gradients": gradients,
        "working_set": _zero3_working_set(arch, weight, zero3_engines),
    }


def plan_for(config: RunConfig, gpus: int, arch: Architecture | None = None) -> MemoryPlan:
    """The memory per GPU of `config` on `gpus` GPUs (`arch`: `describe(config.model)` if None)."""
    arch = arch or describe(config.model)
    parts = _network_bytes(config, arch, gpus)
    activations = _activations(config, arch, DTYPE_BYTES[config.model.dtype])
    return MemoryPlan(
        architecture=arch,
        mode=config.model.lora.mode,
        gpus=gpus,
        activations=activations / GIB,
        **{name: value / GIB for name, value in parts.items()},
    )


def smallest_gpu_count(config: RunConfig, gpu_memory_gib: float, arch: Architecture | None = None):
    """The fewest GPUs of `gpu_memory_gib` that hold `config` (None: not even MAX_GPUS)."""
    arch = arch or describe(config.model)
    for gpus in range(1, MAX_GPUS + 1):
        if plan_for(config, gpus, arch).fits(gpu_memory_gib):
            return gpus
    return None


def _fits_with(config: RunConfig, gpu_memory_gib: float, arch: Architecture, **changes) -> bool:
    """Whether `config` fits with `changes` ({"section.field": value}) applied."""
    sections = {}
    for path, value in changes.items():
        section, name = path.rsplit(".", 1)
        sections.setdefault(section, {})[name] = value
    model, train = config.model, config.train
    if "model.lora" in sections:
        model = dataclasses.replace(model, lora=dataclasses.replace(model.lora, **sections["model.lora"]))
    model = dataclasses.replace(model, **sections.get("model", {}))
    train = dataclasses.replace(train, **sections.get("train", {}))
    sid = dataclasses.replace(config.sid, **sections.get("sid", {}))
    changed = dataclasses.replace(config, model=model, train=train, sid=sid)
    return plan_for(changed, train.num_workers, arch).fits(gpu_memory_gib)


def _worker_count(config: RunConfig, needed: int) -> int:
    """The fewest workers >= `needed` that divide the global batch by the micro-batch (else `needed`)."""
    per_worker = config.train.batch_size // config.train.micro_batch_size
    divisors = [n for n in range(needed, per_worker + 1) if per_worker % n == 0]
    return divisors[0] if divisors else needed


def _fitting_micro_batch(config: RunConfig, gpu_memory_gib: float, arch: Architecture, **changes) -> int:
    """The largest halving of the micro-batch that fits with `changes` (0: none)."""
    micro = config.train.micro_batch_size // 2
    while micro >= 1 and not _fits_with(
        config, gpu_memory_gib, arch, **changes, **{"train.micro_batch_size": micro}
    ):
        micro //= 2
    return micro


def what_to_change(config: RunConfig, gpu_memory_gib: float, arch: Architecture) -> list[str]:
    """Settings that make `config` fit (checked with the same model), as `--set` values."""
    hints = []
    needed = smallest_gpu_count(config, gpu_memory_gib, arch)
    if needed is not None and needed > config.train.num_workers:
        workers = _worker_count(config, needed)
        hints.append(f"train.num_workers={workers} (the fewest {gpu_memory_gib:g} GiB GPUs: {needed})")
    micro = _fitting_micro_batch(config, gpu_memory_gib, arch)
    if micro:
        hints.append(f"train.micro_batch_size={micro}")
    for path, value in (
        ("sid.earlier_steps_recompute", True),
        ("model.gradient_checkpointing", True),
        ("model.checkpoint_policy", "all"),
        ("model.lora.mode", "shared_base"),
    ):
        section_path, name = path.rsplit(".", 1)
        section = {"model.lora": config.model.lora, "model": config.model, "sid": config.sid}[section_path]
        if getattr(section, name) == value:
            continue
        if _fits_with(config, gpu_memory_gib, arch, **{path: value}):
            hints.append(f"{path}={str(value).lower()}")
        elif micro := _fitting_micro_batch(config, gpu_memory_gib, arch, **{path: value}):
            hints.append(f"{path}={str(value).lower()} with train.micro_batch_size={micro}")
    return hints


def check_fits(config: RunConfig) -> MemoryPlan | None:
    """Raise ConfigError when a GPU run cannot fit `train.gpu_memory_gib`; None when not checked
    (a CPU run, GPU memory not given, or a teacher without a sizeable transformer)."""
    train = config.train
    if not train.use_gpu or train.gpu_memory_gib <= 0:
        return None
    try:
        arch = describe(config.model)
    except ConfigError:
        return None  # toys: nothing large enough to plan
    plan = plan_for(config, train.num_workers, arch)
    if plan.fits(train.gpu_memory_gib):
        return plan
    hints = what_to_change(config, train.gpu_memory_gib, arch)
    raise ConfigError(
        f"train.gpu_memory_gib: {config.model.name} in {plan.mode} mode at {config.model.resolution} px x "
        f"{train.micro_batch_size} per GPU needs {plan.total + RESERVED_GIB:.1f} GiB per GPU on "
        f"{train.num_workers} GPU(s) ({format_plan(plan)}, {RESERVED_GIB:g} reserved), more than the "
        f"{train.gpu_memory_gib:g} GiB given; change one of: {'; '.join(hints) or 'a larger GPU'} "
        "(python jobs/plan.py prints the table)"
    )


def format_plan(plan: MemoryPlan) -> str:
    return (
        f"weights {plan.weights:.1f} + optimiser {plan.optimizer:.1f} + gradients {plan.gradients:.1f}"
        f" + working set {plan.working_set:.1f} + activations {plan.activations:.1f} = {plan.total:.1f} GiB"
    )
