"""Memory per GPU of full mode (three full networks) under ZeRO-3, computed from the architecture.

Full mode trains all of F's and G's weights; T is frozen. Under ZeRO-3 each GPU holds 1/N of:
- T: bf16 weights, 2 bytes per parameter (no gradient, no optimiser);
- F and G each: bf16 weights (2) + the fp32 gradient partition (4) + fp32 master weights and
  Adam's two moments (12) = 18 bytes per parameter (`train.mixed_precision=bf16`);
plus what no sharding removes: the gathered working set of each engine (DeepSpeed's
`stage3_max_live_parameters`, two DiT blocks in bf16, and a reduce bucket: `sid_ray.train.ds_config`)
and the activations, bounded from the single-GPU shared-base runs of
benchmarks/results/flux-dev_h200_2026-12-02.md (peak minus the base weights there).

    python benchmarks/zero3_memory.py --model flux-dev
"""

from __future__ import annotations

import argparse

import torch

from sid_ray.config import load_config
from sid_ray.models.registry import build_adapter
from sid_ray.train.ds_config import BUCKET_ELEMENTS, DIT_BLOCK_PARAMS

GIB = 2**30
TEACHER_BYTES, TRAINED_BYTES = 2, 2 + 4 + 12
# activations and workspace, measured on one H200 at gradient checkpointing "all" (GiB): the
# shared-base peaks (36.2 at 512 x 4, 39.7 at 1024 x 2) minus the 22.2 GiB of base weights. The rest
# also holds the two LoRA adapters' weights, gradients and Adam states (523 M parameters, ~8-10 GiB)
# that full mode does not have, so this overstates full mode's activations: an upper bound.
ACTIVATIONS_GIB = {"flux-dev": {"512 x 4": 14.0, "1024 x 2": 17.5}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4, 8])
    args = parser.parse_args()
    with torch.device("meta"):
        adapter = build_adapter(load_config(None, [f"model.name={args.model}", "model.init=random"]))
    params = sum(p.numel() for p in adapter.transformer.parameters())
    sharded = params * (TEACHER_BYTES + 2 * TRAINED_BYTES) / GIB
    # per engine: two blocks live in bf16 + one bf16 reduce bucket; three engines (T, F, G)
    working = 3 * (2 * DIT_BLOCK_PARAMS * 2 + BUCKET_ELEMENTS * 2) / GIB
    activations = ACTIVATIONS_GIB.get(args.model, {})
    print(f"{args.model}: {params / 1e9:.2f} B parameters; sharded state {sharded:.1f} GiB in all")
    header = " | ".join(f"total at {shape}" for shape in activations)
    print(f"| GPUs | sharded state / GPU | working set | {header} |")
    print("|---|---|---|" + "---|" * len(activations))
    for n in args.gpus:
        totals = " | ".join(f"{sharded / n + working + act:.1f}" for act in activations.values())
        print(f"| {n} | {sharded / n:.1f} | {working:.1f} | {totals} |")


if __name__ == "__main__":
    main()
