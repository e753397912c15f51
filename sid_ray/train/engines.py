"""DeepSpeed implementations of what `distill_step` sees: `TrainedNetwork` for F and G, and the
frozen teacher.

Every forward goes through the engine itself (`engine(x_t, t, cond, scale)`, which DeepSpeed
routes to `FlowModel.forward` = `guided_velocity`), never through `engine.module.velocity`:
ZeRO-3 gathers a sharded parameter only in the module hooks that the engine's forward path
sets up, and the root module's own hooks fire only when the root is called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import deepspeed
import torch

from sid_ray.models.base import FlowModel
from sid_ray.sid.gradients import GradientSanitizer
from sid_ray.sid.guidance import Conditioning
from sid_ray.sid.step import parameters_frozen


class EngineVelocity:
    """A `VelocityModel` that calls a DeepSpeed engine (or a plain module without parameters).

    `through_engine=False` calls the engine's root module instead of the engine: ZeRO-3's
    gather hooks live on the modules (root included) and still fire, but DeepSpeed 0.19's
    engine forward also hooks its outputs to run *its own* backward bookkeeping (gradient
    accumulation scaling, ZeRO reduce epilogue) whenever a backward passes through them. That is
    right for F's and G's own losses, wrong for the frozen teacher (no optimiser: DeepSpeed
    refuses the backward) and for F while G steps (F's optimiser must not see G's backward).
    """

    def __init__(self, engine: Any, through_engine: bool = True):
        self.engine = engine
        self.through_engine = through_engine

    def guided_velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> torch.Tensor:
        return self._call()(x_t, t, cond, scale)

    def guided_velocity_with_features(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._call()(x_t, t, cond, scale, True)

    def _call(self):
        return self.engine if self.through_engine else getattr(self.engine, "module", self.engine)


class DeepSpeedTrainedNetwork:
    """F or G as a DeepSpeed engine; satisfies `sid_ray.sid.step.TrainedNetwork`.

    `engine.backward` divides the loss by the accumulation count and `engine.step` only steps
    the optimiser at the accumulation boundary, which is exactly the protocol's contract.
    """

    def __init__(self, engine: deepspeed.DeepSpeedEngine):
        self.engine = engine
        self.module = EngineVelocity(engine)
        # NaN -> 0 on every parameter's gradient before DeepSpeed reduces and partitions it
        self.sanitizer = GradientSanitizer(engine.module)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        # F is frozen during the G update: its inputs carry gradient, its parameters take none,
        # and its forward bypasses the engine's output hooks (see EngineVelocity), so F's
        # optimiser and ZeRO state are untouched by G's backward.
        self.module.through_engine = False
        try:
            with parameters_frozen(self.engine.module):
                yield
        finally:
            self.module.through_engine = True

    @property
    def global_steps(self) -> int:
        return self.engine.global_steps


def build_trained_network(module: FlowModel, ds_config: dict) -> DeepSpeedTrainedNetwork:
    """Wrap F or G: DeepSpeed shards it (ZeRO-2/3) and builds its Adam from `ds_config`."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(module).__name__} has no trainable parameters")
    engine, _, _, _ = deepspeed.initialize(model=module, model_parameters=params, config=ds_config)
    return DeepSpeedTrainedNetwork(engine)


def build_teacher(teacher: FlowModel, ds_config: dict) -> EngineVelocity:
    """The frozen teacher, ZeRO-3 sharded with no optimiser.

    A teacher without parameters (the exact Gaussian-mixture teacher) has nothing to shard and
    is called directly.
    """
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval()
    if next(teacher.parameters(), None) is None:
        return EngineVelocity(teacher)
    engine, _, _, _ = deepspeed.initialize(model=teacher, config=ds_config)
    engine.eval()
    return EngineVelocity(engine, through_engine=False)
