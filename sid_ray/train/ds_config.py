"""DeepSpeed configs for T, F and G, derived from our RunConfig in this one place.

Why not HF's "auto" values: diffusers models are not `transformers` models, so nothing fills
"auto" in; bucket and prefetch sizes are set here from the size of one DiT block instead.
"""

from __future__ import annotations

from typing import Any

from sid_ray.config.schema import RunConfig

# ZeRO-3 gathers parameters block by block. A DiT block of the large teachers holds 100 M to
# 400 M parameters (FLUX double block ~340 M, SD3.5-large ~ 130 M); prefetching one block ahead
# and keeping up to two blocks live overlaps the all-gather of block i+1 with the compute of
# block i without holding more than a few blocks at once.
DIT_BLOCK_PARAMS = 350_000_000
# Reduce/all-gather buckets of ~ half a block: large enough to use the network well, small
# enough that the bucket memory stays below one block.
BUCKET_ELEMENTS = 200_000_000
# Parameters smaller than this (norms, biases, embeddings of the toys) stay replicated: sharding
# them costs more in latency than it saves in memory.
PARAM_PERSISTENCE_THRESHOLD = 100_000


def _zero_section(stage: int) -> dict[str, Any]:
    section: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": BUCKET_ELEMENTS,
        "allgather_bucket_size": BUCKET_ELEMENTS,
    }
    if stage == 3:
        section.update(
            {
                "stage3_prefetch_bucket_size": DIT_BLOCK_PARAMS,
                "stage3_max_live_parameters": 2 * DIT_BLOCK_PARAMS,
                "stage3_max_reuse_distance": 2 * DIT_BLOCK_PARAMS,
                "stage3_param_persistence_threshold": PARAM_PERSISTENCE_THRESHOLD,
                # the exported generator is gathered explicitly (checkpoint.py), not by DeepSpeed
                "stage3_gather_16bit_weights_on_model_save": False,
            }
        )
    return section


def check_batch(config: RunConfig) -> int:
    """micro batch x accumulation x world size must be the global batch; returns accumulation."""
    train = config.train
    accumulation = train.accumulation_steps
    product = train.micro_batch_size * accumulation * train.num_workers
    assert product == train.batch_size, (
        f"train.batch_size={train.batch_size} != micro_batch_size {train.micro_batch_size} x "
        f"accumulation {accumulation} x num_workers {train.num_workers} = {product}"
    )
    return accumulation


def trained_network_config(config: RunConfig, role: str) -> dict[str, Any]:
    """The DeepSpeed config of F (role "fake") or G (role "generator")."""
    if role not in ("fake", "generator"):
        raise ValueError(f"role must be 'fake' or 'generator', got {role!r}")
    accumulation = check_batch(config)
    optim = config.optim
    lr = optim.fake_lr if role == "fake" else optim.generator_lr
    ds: dict[str, Any] = {
        "train_batch_size": config.train.batch_size,
        "train_micro_batch_size_per_gpu": config.train.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "optimizer": {
            "type": "Adam",
            "params": {
                "lr": lr,
                "betas": [optim.beta1, optim.beta2],
                "eps": optim.eps,
                "weight_decay": optim.weight_decay,
                # torch's Adam: DeepSpeed's fused CPU/GPU Adam ops are not built in this install
                "torch_adam": True,
                "adam_w_mode": False,
                # torch's fused CUDA kernel: one launch per step instead of a few per tensor
                "fused": config.train.use_gpu,
            },
        },
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": _zero_section(config.train.zero_stage),
        "steps_per_print": 10**9,  # our progress line reports; DeepSpeed's own log stays quiet
        "wall_clock_breakdown": False,
    }
    if config.train.mixed_precision == "bf16":
        # bf16 weights and compute; DeepSpeed keeps the fp32 master copy in the optimizer
        ds["bf16"] = {"enabled": True}
    return ds


def teacher_config(config: RunConfig) -> dict[str, Any]:
    """The frozen teacher: ZeRO-3 sharded, no optimiser (DeepSpeed's ZeRO inference mode)."""
    ds: dict[str, Any] = {
        # DeepSpeed wants batch numbers even without an optimiser; they must agree with F and G
        "train_batch_size": config.train.batch_size,
        "train_micro_batch_size_per_gpu": config.train.micro_batch_size,
        "gradient_accumulation_steps": check_batch(config),
        "zero_optimization": _zero_section(3),
        "steps_per_print": 10**9,
    }
    if config.train.mixed_precision == "bf16":
        ds["bf16"] = {"enabled": True}
    return ds
