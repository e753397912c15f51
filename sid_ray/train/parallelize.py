"""Parallelism and the other whole-network transforms, applied from outside the model code.

As torchtitan's `parallelize_*` functions do: the adapter builds plain single-device networks
(T, and F and G as `make_trainable_copy` returns them); this module decides, from the config,
how they run, applies it, and says in one line what it chose and why:
- activation checkpointing (`model.gradient_checkpointing`, `model.checkpoint_policy`);
- compiled transformer blocks (`train.compile`, sid_ray.train.compile);
- the DeepSpeed ZeRO stage of each network (`zero_plan`), in the Ray worker only.
`run_local` applies the first two (`transform_networks`) and keeps plain torch optimisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sid_ray.config.schema import RunConfig
from sid_ray.models.base import FlowModel
from sid_ray.sid.step import SiDNetworks
from sid_ray.train.attention import keep_attention_gradients_in_output_layout
from sid_ray.train.compile import compile_blocks
from sid_ray.train.ds_config import teacher_config, trained_network_config
from sid_ray.train.engines import EngineVelocity, build_teacher, build_trained_network

LORA_STAGE_REASON = (
    "LoRA views expose only their adapter weights, so ZeRO-3 would partition tensors its gather "
    "hooks never fetch; stage 2 shards the LoRA weights' gradients and Adam state"
)


@dataclass(frozen=True)
class ZeroPlan:
    """How DeepSpeed holds each network, and why."""

    trained_stage: int  # F's and G's ZeRO stage
    teacher_engine: bool  # T as a ZeRO-3 engine without optimiser (False: the module itself)
    why: str

    @property
    def sharded_roles(self) -> tuple[str, ...]:
        """The networks that run as ZeRO-3 engines."""
        teacher = ("teacher",) if self.teacher_engine else ()
        return teacher + (("fake", "generator") if self.trained_stage == 3 else ())

    def describe(self) -> str:
        teacher = "ZeRO-3, no optimiser" if self.teacher_engine else "the shared base, replicated"
        return f"F, G: ZeRO-{self.trained_stage}; T: {teacher} ({self.why})"


def zero_plan(config: RunConfig) -> ZeroPlan:
    mode, asked = config.model.lora.mode, config.train.zero_stage
    if mode == "full":
        return ZeroPlan(asked, True, f"full copies; train.zero_stage={asked}")
    overridden = f"train.zero_stage={asked} -> 2: " if asked != 2 else ""
    if mode == "shared_base":
        why = f"{overridden}{LORA_STAGE_REASON}; T is the one base with adapters off, stored once"
        return ZeroPlan(2, False, why)
    return ZeroPlan(2, True, f"{overridden}{LORA_STAGE_REASON}; T is its own copy")


def transform_networks(
    config: RunConfig, adapter, fake: FlowModel, generator: FlowModel, sharded: tuple[str, ...] = ()
) -> list[str]:
    """Activation checkpointing, compiled blocks and (with cuDNN attention) the eager attention
    modules' gradient layout on T, F and G, in place; returns log notes.

    `sharded`: roles that will be ZeRO-3 engines, whose blocks are not compiled (ZeRO-3 gathers
    each parameter in module hooks inside the block, which would split the graph)."""
    notes = []
    if config.model.gradient_checkpointing:
        adapter.set_gradient_checkpointing(True, [fake, generator])
        notes.append(f"activation checkpointing: {config.model.checkpoint_policy}")
    roles = {"teacher": adapter.teacher, "fake": fake, "generator": generator}
    transformers = {role: getattr(net, "transformer", None) for role, net in roles.items()}
    compiled = [] if config.train.compile != "blocks" else [r for r in roles if r not in sharded]
    if compiled:
        count = compile_blocks(
            [transformers[r] for r in compiled if transformers[r] is not None], config.train.compile_backend
        )
        skipped = f", not in ZeRO-3 {'/'.join(sharded)}" if sharded else ""
        notes.append(f"compiled {count} transformer blocks ({config.train.compile_backend}{skipped})")
    # cuDNN's attention backward in the eager transformers (compiled ones need nothing; the shared
    # base is one module for all three roles): attention.py says why
    compiled_ids = {id(transformers[r]) for r in compiled}
    eager = [t for t in transformers.values() if t is not None and id(t) not in compiled_ids]
    if config.train.attention_backend == "cudnn" and eager:
        count = keep_attention_gradients_in_output_layout(eager)
        notes.append(
            f"cuDNN attention: {count} eager attention modules pass gradients on in their output's layout"
        )
    return notes


def parallelize(
    config: RunConfig, adapter, fake: FlowModel, generator: FlowModel, device: torch.device
) -> tuple[SiDNetworks, str]:
    """T, F and G as the loop uses them (DeepSpeed engines), and the line that says how."""
    plan = zero_plan(config)
    notes = transform_networks(config, adapter, fake, generator, plan.sharded_roles)
    engines = []
    for role, module in (("fake", fake), ("generator", generator)):
        ds = trained_network_config(config, role)
        ds["zero_optimization"] = {**ds["zero_optimization"], "stage": plan.trained_stage}
        engines.append(build_trained_network(module.to(device), ds))
    if plan.teacher_engine:
        teacher = build_teacher(adapter.teacher.to(device), teacher_config(config))
    else:
        teacher = EngineVelocity(adapter.teacher, through_engine=False)
    return SiDNetworks(teacher, *engines), "; ".join([plan.describe(), *notes])
