"""Memory per GPU of full mode (three full networks) under ZeRO-3, from the library's sizing model.

The model (what each GPU holds of T, F and G, the working set, the activations) is
`sid_ray.train.memory_plan`; `jobs/plan.py` prints the same for any config. This script keeps
the table of benchmarks/results/flux-dev_h200_2026-12-02.md: full mode, bf16 with fp32 master
weights, gradient checkpointing of every network, at 512 x 4 and 1024 x 2 images per GPU.

    python benchmarks/zero3_memory.py --model flux-dev
"""

from __future__ import annotations

import argparse

from sid_ray.config import load_config
from sid_ray.models.architecture import describe
from sid_ray.train.memory_plan import plan_for

SHAPES = ((512, 4), (1024, 2))  # (resolution, images per GPU) of the measured shared-base runs


def full_mode_config(model: str, resolution: int, micro_batch: int):
    return load_config(
        None,
        [
            f"model.name={model}",
            "model.lora.mode=full",
            "model.dtype=bfloat16",
            "model.gradient_checkpointing=true",
            f"model.resolution={resolution}",
            "train.mixed_precision=bf16",
            "train.zero_stage=3",
            f"train.micro_batch_size={micro_batch}",
            f"train.batch_size={micro_batch}",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4, 8])
    args = parser.parse_args()
    configs = {f"{r} x {b}": full_mode_config(args.model, r, b) for r, b in SHAPES}
    arch = describe(next(iter(configs.values())).model)
    print(f"{args.model}: {arch.parameters / 1e9:.2f} B parameters")
    header = " | ".join(f"total at {shape}" for shape in configs)
    print(f"| GPUs | sharded state / GPU | working set | {header} |")
    print("|---|---|---|" + "---|" * len(configs))
    for n in args.gpus:
        plans = [plan_for(config, n, describe(config.model)) for config in configs.values()]
        sharded = plans[0].weights + plans[0].optimizer + plans[0].gradients
        totals = " | ".join(f"{plan.total:.1f}" for plan in plans)
        print(f"| {n} | {sharded:.1f} | {plans[0].working_set:.1f} | {totals} |")


if __name__ == "__main__":
    main()
