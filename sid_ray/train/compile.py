"""`train.compile`: torch.compile of the transformers' repeated blocks (regional compilation).

Why blocks and not the whole network: at FLUX.1-dev size an eager SiD iteration launches ~50k
small kernels (LoRA's down/up/scale/add on 419 projections, modulation, RMSNorm, RoPE, gated
residuals) around matmuls that already run near the GPU's peak; fusing those is where the time
is (benchmarks/results/flux-dev_h200_*.md). Dynamo lifts a block's weights to graph inputs, so
one compiled graph per block class serves all of its instances (FLUX: 19 double + 38 single
blocks, two graphs), and the SiD step's passes (T with adapters off; F and G with their adapter;
with and without grad; F frozen inside G's update) are guard variants of those few graphs.
`RECOMPILE_LIMIT` holds them all: torch's default (8) would fall back to eager silently.

Blocks are compiled in place (`nn.Module.compile`), so diffusers' gradient checkpointing and the
shared-base adapter pinning (`SharedLoraBase.checkpoint_function`) call the compiled block as
they called the eager one. Shapes are static in a run (fixed resolution, micro-batch and text
length), so graphs are compiled with `dynamic=False`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sid_ray.models.blocks import repeated_blocks

RECOMPILE_LIMIT = 64  # guard variants per block graph: ~10 per step, x2 for safety margin and more


def compile_blocks(transformers: Iterable[nn.Module], backend: str) -> int:
    """Compile every repeated block of `transformers` in place; returns how many were compiled.

    A transformer listed twice (the shared base is T's, F's and G's) is compiled once."""
    _raise_recompile_limit()
    _guard_requires_grad_of_parameters()
    compiled = 0
    for transformer in {id(t): t for t in transformers}.values():
        for block in repeated_blocks(transformer):
            block.compile(backend=backend, dynamic=False)
            compiled += 1
    return compiled


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * RECOMPILE_LIMIT)


def _guard_requires_grad_of_parameters() -> None:
    """Make every call check the `requires_grad` of the block's parameters against its graph.

    The SiD step flips `requires_grad` of LoRA weights between passes (F trained, then F frozen
    inside G's update), in place. Dynamo skips a parameter's tensor guards while the dict holding
    it is unchanged (`skip_tensor_guards_with_matching_dict_tags`), so on torch 2.11 a graph traced
    with frozen weights was reused when they were trainable again and their gradient silently
    never came (FLUX.1-dev: F's backward gave `transformer_blocks.18.attn.to_q.lora_A.fake.weight`
    no gradient; pytorch/pytorch#139476, fixed upstream by checking requires_grad on that fast
    path, pytorch/pytorch#177158). Turning the skip off costs a few tensor checks per block call.
    """
    torch._dynamo.config.skip_tensor_guards_with_matching_dict_tags = False
