"""LoRA for F and G via peft, and the shared-base mode (one frozen base, two named adapters).

Modes (`model.lora.mode`, see sid_ray.config.schema.LoraConfig):
- lora: F and G are deep copies of T, each with one adapter ("default").
- shared_base: ONE frozen base transformer carries two adapters, "fake" and "generator". The
  teacher is the base with adapters disabled; F and G are views that activate their adapter
  around each forward. The base weights are stored once.

Every trained network is returned as a `LoraView`: a FlowModel whose `parameters()` are exactly
its own adapter's LoRA parameters (so optimisers, gradient sanitiser hooks and
`parameters_frozen` see those and nothing else) while the forward runs the whole transformer.

Two peft behaviours we work around, both because T, F and G share one module:
- peft's `set_adapter` / `enable_adapters` also flip `requires_grad` (activating an adapter makes
  it trainable). Here `requires_grad` belongs to the training loop (F is frozen while G steps),
  so `adapter_scope` restores the flags it found.
- activation checkpointing recomputes blocks in the backward pass, when another view's adapter
  may be active; `SharedLoraBase.checkpoint_function` re-activates the forward-time adapter.
LoRA B starts at zero (peft's default), so F and G start as exact copies of T (SID.md 2).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from torch import nn
from torch.utils.checkpoint import checkpoint

from sid_ray.config.schema import ConfigError, LoraConfig
from sid_ray.models.base import FlowModel

SHARED_ADAPTERS = ("fake", "generator")


def peft_config(config: LoraConfig, targets: Sequence[str]) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=config.rank, lora_alpha=config.alpha, target_modules=list(targets), init_lora_weights=True
    )


def tuner_layers(module: nn.Module) -> list[BaseTunerLayer]:
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def lora_parameters(module: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """{qualified name: parameter} of one adapter's LoRA weights (A and B of every layer)."""
    return {n: p for n, p in module.named_parameters() if "lora_" in n and f".{adapter}." in f"{n}."}


def add_lora(transformer: nn.Module, config: LoraConfig, targets: Sequence[str], adapter: str) -> dict:
    """Inject one adapter with diffusers' `add_adapter` (peft underneath); base frozen, LoRA trainable."""
    before = {n for n, _ in transformer.named_parameters()}
    transformer.add_adapter(peft_config(config, targets), adapter_name=adapter)
    params = lora_parameters(transformer, adapter)
    if not params:
        raise ConfigError(
            f"model.lora.target_modules: LoRA targets {list(targets)} matched no module of "
            f"{type(transformer).__name__}; set it to names of its Linear layers"
        )
    for name, p in transformer.named_parameters():
        # base weights (present before the injection, renamed to *.base_layer.*) stay frozen
        p.requires_grad_(name in params)
    assert before, "transformer has no parameters"
    return params


@contextlib.contextmanager
def adapter_scope(layers: Sequence[BaseTunerLayer], adapter: str | None) -> Iterator[None]:
    """Run with only `adapter` active (None: adapters disabled), restoring state and requires_grad."""
    if not layers:
        yield
        return
    state = (layers[0].disable_adapters, list(layers[0].active_adapters))
    flags = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
    _set_state(layers, adapter is None, [adapter] if adapter else state[1])
    for p, flag in flags:
        p.requires_grad_(flag)
    try:
        yield
    finally:
        _set_state(layers, *state)
        for p, flag in flags:
            p.requires_grad_(flag)


def _set_state(layers: Sequence[BaseTunerLayer], disabled: bool, active: list[str]) -> None:
    for layer in layers:
        if disabled:
            layer.enable_adapters(False)
        else:
            layer.enable_adapters(True)
            layer.set_adapter(active)


class LoraView(FlowModel):
    """A FlowModel running `inner` with one adapter of `base` active (None: the plain base).

    `inner` (the family's velocity wrapper around `base`) and `base` are NOT registered as
    submodules: `parameters()` / `state_dict()` hold only this adapter's LoRA weights, the very
    tensors inside `base`. Move the base with the adapter (`DiTAdapter.to`), not with this view.
    """

    def __init__(self, inner: FlowModel, base: nn.Module, adapter: str | None):
        super().__init__()
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "base", base)
        self.adapter = adapter
        object.__setattr__(self, "_layers", tuner_layers(base))
        params = lora_parameters(base, adapter) if adapter else {}
        # ParameterDict keys may not contain "."; the tensors are shared, not copied
        self.lora = nn.ParameterDict({n.replace(".", "__"): p for n, p in params.items()})

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        with adapter_scope(self._layers, self.adapter):
            return self.inner.velocity(x_t, t, cond)

    def guided_velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond, scale: float) -> torch.Tensor:
        # the family's own guidance (FLUX: embedding) inside the scope, so every pass uses this adapter
        with adapter_scope(self._layers, self.adapter):
            return self.inner.guided_velocity(x_t, t, cond, scale)

    @property
    def transformer(self) -> nn.Module:
        return self.base

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's weights in peft's naming (adapter name stripped), for saving."""
        return get_peft_model_state_dict(self.base, adapter_name=self.adapter)


class SharedLoraBase:
    """One frozen transformer with the adapters "fake" and "generator" (shared_base mode)."""

    def __init__(self, transformer: nn.Module, config: LoraConfig, targets: Sequence[str]):
        self.transformer = transformer
        for name in SHARED_ADAPTERS:
            add_lora(transformer, config, targets, name)
        trainable = {n for a in SHARED_ADAPTERS for n in lora_parameters(transformer, a)}
        for name, p in transformer.named_parameters():
            p.requires_grad_(name in trainable)
        self.layers = tuner_layers(transformer)
        _set_state(self.layers, True, [SHARED_ADAPTERS[0]])  # the plain base unless a view says otherwise
        for name, p in transformer.named_parameters():
            p.requires_grad_(name in trainable)

    def view(self, inner: FlowModel, adapter: str | None) -> LoraView:
        """adapter None: the teacher (adapters disabled); "fake" / "generator": F / G."""
        if adapter is not None and adapter not in SHARED_ADAPTERS:
            raise ValueError(f"adapter must be one of {SHARED_ADAPTERS} or None, got {adapter!r}")
        return LoraView(inner, self.transformer, adapter)

    def current_state(self) -> str | None:
        if not self.layers or self.layers[0].disable_adapters:
            return None
        return self.layers[0].active_adapters[0]

    def checkpoint_function(self, function, *args, **kwargs):
        """diffusers' `gradient_checkpointing_func`: non-reentrant checkpoint, adapter pinned."""
        adapter = self.current_state()

        def run(*inner_args, **inner_kwargs):
            with adapter_scope(self.layers, adapter):
                return function(*inner_args, **inner_kwargs)

        return checkpoint(run, *args, use_reentrant=False, **kwargs)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What an optimiser of `model` should hold: its parameters that require a gradient."""
    return [p for p in model.parameters() if p.requires_grad]


def unique_storage_bytes(modules: Sequence[nn.Module]) -> int:
    """Bytes of distinct parameter storage across `modules` (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            storage = p.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def export_lora(view: LoraView, folder: str | Path, pipeline_class, config: LoraConfig) -> Path:
    """Save `view`'s adapter as diffusers LoRA safetensors (`pipeline_class.save_lora_weights`).

    The folder loads with stock diffusers: `pipe.load_lora_weights(folder)` on the teacher
    pipeline. Rank and alpha travel as adapter metadata, so alpha != rank scales correctly.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"r": config.rank, "lora_alpha": config.alpha, "target_modules": _targets(view)}
    pipeline_class.save_lora_weights(
        folder,
        transformer_lora_layers=view.lora_state_dict(),
        transformer_lora_adapter_metadata=metadata,
        safe_serialization=True,
    )
    return folder


def _targets(view: LoraView) -> list[str]:
    names = {
        n.split(".lora_")[0].removesuffix(".base_layer") for n in lora_parameters(view.base, view.adapter)
    }
    return sorted(names)


def merged_transformer(view: LoraView) -> nn.Module:
    """A plain copy of the base with `view`'s adapter fused in and every LoRA layer removed.

    Uses diffusers' `fuse_lora` (peft's merge) and `unload_lora`; the result has the teacher's
    architecture and key names, so it saves as a stock pipeline's transformer.
    """
    base = copy.deepcopy(view.base)
    base.fuse_lora(adapter_names=[view.adapter])
    base.unload_lora()
    if tuner_layers(base):
        raise RuntimeError("LoRA layers remained after unload_lora()")
    return base.requires_grad_(False)
