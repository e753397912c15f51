"""The text `jobs/plan.py` prints: one run's memory per GPU, and the sizing table of every teacher."""

from __future__ import annotations

from sid_ray.config.io import apply_overrides
from sid_ray.config.schema import RunConfig
from sid_ray.models.architecture import Architecture, describe
from sid_ray.models.registry import adapter_class, registered_names
from sid_ray.train.memory_plan import RESERVED_GIB, plan_for, smallest_gpu_count

MODES = ("full", "lora", "shared_base")


def describe_run(config: RunConfig, arch: Architecture) -> str:
    model, train = config.model, config.train
    checkpointing = model.checkpoint_policy if model.gradient_checkpointing else "off"
    return (
        f"{arch.name}: {arch.parameters / 1e9:.2f} B transformer parameters, one LoRA adapter "
        f"{arch.lora_parameters / 1e6:.1f} M (rank {model.lora.rank}); {arch.blocks} blocks of "
        f"{arch.tokens} tokens x {arch.width} per image\n"
        f"mode {model.lora.mode}, {model.resolution} px x {train.micro_batch_size} images per GPU, "
        f"{model.dtype} weights, mixed precision {train.mixed_precision}, checkpointing {checkpointing}"
    )


def gpu_table(config: RunConfig, arch: Architecture, gpu_counts: list[int], gpu_memory_gib: float) -> str:
    """Markdown: GiB per GPU by part, for each GPU count."""
    lines = [
        f"| GPUs | weights | optimiser | gradients | working set | activations | total GiB | "
        f"fits {gpu_memory_gib:g} GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gpus in gpu_counts:
        p = plan_for(config, gpus, arch)
        lines.append(
            f"| {gpus} | {p.weights:.1f} | {p.optimizer:.1f} | {p.gradients:.1f} | {p.working_set:.1f} "
            f"| {p.activations:.1f} | {p.total:.1f} | {'yes' if p.fits(gpu_memory_gib) else 'no'} |"
        )
    return "\n".join(lines)


def smallest_line(config: RunConfig, arch: Architecture, gpu_memory_gib: float) -> str:
    needed = smallest_gpu_count(config, gpu_memory_gib, arch)
    count = f"{needed}" if needed is not None else "none (more than 1024)"
    return (
        f"smallest GPU count that fits {gpu_memory_gib:g} GiB GPUs: {count} "
        f"({RESERVED_GIB:g} GiB per GPU kept free for the CUDA context, NCCL and fragmentation)"
    )


def sized_teachers() -> list[str]:
    """Registered teachers with a released transformer to size (not the tiny test models, toys)."""
    names = []
    for name in registered_names():
        released = getattr(adapter_class(name), "released_config_for", None)
        if "tiny" not in name and released is not None and released(name) is not None:
            names.append(name)
    return names


def sizing_table(base: RunConfig, shapes: list[tuple[int, int]], memories: list[float]) -> str:
    """Markdown: every sized teacher x mode x (resolution, micro-batch) of `shapes`, on `base`'s
    other settings: GiB per GPU on 1 and 8 GPUs and the fewest GPUs of each of `memories`."""
    head = " | ".join(f"fewest {m:g} GiB GPUs" for m in memories)
    model = base.model
    checkpointing = model.checkpoint_policy if model.gradient_checkpointing else "off"
    lines = [
        f"Settings: {model.dtype} weights, mixed precision {base.train.mixed_precision}, gradient "
        f"checkpointing {checkpointing}, LoRA rank {model.lora.rank}, F and G at ZeRO-"
        f"{base.train.zero_stage} in full mode. GiB/GPU excludes the {RESERVED_GIB:g} GiB kept free; "
        "fewest = the smallest GPU count that fits with it (- = none up to 1024).",
        "",
        f"| teacher | mode | px x images/GPU | GiB/GPU on 1 | GiB/GPU on 8 | {head} |",
        "|---|---|---|---|---|" + "---|" * len(memories),
    ]
    architectures: dict[tuple[str, int], Architecture] = {}
    for name in sized_teachers():
        for mode in MODES:
            for resolution, micro in shapes:
                config = apply_overrides(
                    base,
                    [
                        f"model.name={name}",
                        f"model.lora.mode={mode}",
                        f"model.resolution={resolution}",
                        f"train.micro_batch_size={micro}",
                    ],
                )
                key = (name, resolution)  # the architecture does not depend on the mode
                arch = architectures[key] = architectures.get(key) or describe(config.model)
                one, eight = plan_for(config, 1, arch).total, plan_for(config, 8, arch).total
                fewest = " | ".join(str(smallest_gpu_count(config, m, arch) or "-") for m in memories)
                lines.append(
                    f"| {name} | {mode} | {resolution} x {micro} | {one:.1f} | {eight:.1f} | {fewest} |"
                )
    return "\n".join(lines)
