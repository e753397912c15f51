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
  so adapters are switched by setting only what the layers' forward reads (`_set_state`), and
  only when the state differs.
- activation checkpointing recomputes blocks in the backward pass, when another view's adapter
  may be active; `SharedLoraBase.checkpoint_function` re-activates the forward-time adapter on
  the recomputed block's own layers.
LoRA B starts at zero (peft's default), so F and G start as exact copies of T (SID.md 2).
"""

from __future__ import annotations

import contextlib
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
from sid_ray.models.export import Gather, no_gather

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


AdapterState = tuple[bool, list[str]]  # (adapters disabled, active adapter names)


def adapter_state(layer: BaseTunerLayer) -> AdapterState:
    return layer.disable_adapters, list(layer.active_adapters)


@contextlib.contextmanager
def adapter_scope(layers: Sequence[BaseTunerLayer], adapter: str | None) -> Iterator[None]:
    """Run with only `adapter` active (None: adapters disabled) on `layers`, then restore.

    Switches nothing when the layers are already in that state (layers are always switched
    together, so the first one speaks for all)."""
    if not layers:
        yield
        return
    found = adapter_state(layers[0])
    wanted = (adapter is None, [adapter] if adapter else found[1])
    if wanted == found:
        yield
        return
    _set_state(layers, *wanted)
    try:
        yield
    finally:
        _set_state(layers, *found)


def _set_state(layers: Sequence[BaseTunerLayer], disabled: bool, active: list[str]) -> None:
    """Set what a peft layer's forward reads (`disable_adapters`, `active_adapters`) and nothing else.

    peft's own `enable_adapters` / `set_adapter` also rewrite `requires_grad` of every adapter
    weight (activating makes trainable). Here `requires_grad` belongs to the training loop (F is
    frozen while G steps), and rewriting then restoring ~2,500 flags over FLUX's 419 LoRA layers
    cost 50-70 ms of CPU per switch, hundreds of times per iteration, with the GPU idle.
    """
    for layer in layers:
        layer._disable_adapters = disabled
        layer._active_adapter = list(active)


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
        self._layers_of_block: dict[int, list[BaseTunerLayer]] = {}  # id(block) -> its LoRA layers
        # model.checkpoint_policy "frozen": checkpoint only passes whose adapter takes no gradient
        self.checkpoint_frozen_only = False
        self.trained_blocks_recomputed: frozenset[int] = frozenset()  # ids: recomputed even when trained
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

    def checkpoint_function(self, block, *args, **kwargs):
        """diffusers' `gradient_checkpointing_func`: non-reentrant checkpoint of one block.

        The backward recomputes the block when another view's adapter may be active (F's blocks
        during G's update), so the recompute pins the adapter the forward ran with, on this block's
        own LoRA layers only; in the forward itself the state already matches and nothing switches.
        """
        adapter = self.current_state()
        layers = self._block_layers(block)
        if (
            self.checkpoint_frozen_only
            and adapter is not None
            and id(block) not in self.trained_blocks_recomputed
            and _trains(layers, adapter)
        ):
            return block(*args, **kwargs)  # the trained network keeps its activations

        def run(*inner_args, **inner_kwargs):
            with adapter_scope(layers, adapter):
                return block(*inner_args, **inner_kwargs)

        return checkpoint(run, *args, use_reentrant=False, **kwargs)

    def _block_layers(self, block) -> list[BaseTunerLayer]:
        if not isinstance(block, nn.Module):  # a plain function: it may run any layer
            return self.layers
        key = id(block)
        if key not in self._layers_of_block:
            self._layers_of_block[key] = tuner_layers(block)
        return self._layers_of_block[key]


def _trains(layers: Sequence[BaseTunerLayer], adapter: str) -> bool:
    """Whether `adapter`'s weights in `layers` take a gradient now (an adapter is frozen or
    trained as a whole, so its first layer speaks for all)."""
    return bool(layers) and layers[0].lora_A[adapter].weight.requires_grad


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
    """A plain copy of the base with `view`'s adapter merged in and no LoRA layer, for sampling.

    Built from `merged_state_tensors` (what the export writes): the teacher's class on the meta
    device, given cloned tensors. The export itself never builds it.
    """
    base = view.base
    with torch.device("meta"):
        merged = type(base).from_config(base.config)
    state = {key: tensor.clone() for key, tensor in merged_state_tensors(base, view.adapter)}
    merged.load_state_dict(state, strict=True, assign=True)
    _copy_unsaved_buffers(base, merged)
    return merged.eval().requires_grad_(False)


def _copy_unsaved_buffers(source: nn.Module, target: nn.Module) -> None:
    """Non-persistent buffers (no state-dict entry, so still on the meta device) from `source`."""
    for name, buffer in target.named_buffers():
        if buffer.is_meta:
            owner, _, attribute = name.rpartition(".")
            target.get_submodule(owner).register_buffer(
                attribute, source.get_buffer(name).clone(), persistent=False
            )


def merged_state_tensors(
    module: nn.Module, adapter: str | None, gather: Gather = no_gather, prefix: str = ""
) -> Iterator[tuple[str, torch.Tensor]]:
    """`module`'s state dict as the un-adapted class names it, `adapter` merged in, lazily.

    Each LoRA layer gives its base layer's tensors under the plain names (no ".base_layer."), the
    weight being base + the adapter's delta; `lora_*` tensors and the other adapters of a shared
    base are left out. Without LoRA layers this is the module's own state dict. One module's
    parameters at a time are gathered (`gather`); a yielded tensor may be a view that is only
    valid until the next one is requested.
    """
    if isinstance(module, BaseTunerLayer):
        with gather(list(module.parameters())):
            yield from _merged_layer_tensors(module, adapter, prefix)
        return
    with gather(list(module.parameters(recurse=False))):
        yield from _own_tensors(module, prefix)
    for name, child in module.named_children():
        yield from merged_state_tensors(child, adapter, gather, f"{prefix}{name}.")


def _own_tensors(module: nn.Module, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The state-dict entries `module` holds itself (parameters, then persistent buffers)."""
    for name, param in module.named_parameters(recurse=False):
        yield prefix + name, param.detach()
    for name, buffer in module.named_buffers(recurse=False):
        if name not in module._non_persistent_buffers_set:
            yield prefix + name, buffer.detach()


def _merged_layer_tensors(
    layer: BaseTunerLayer, adapter: str | None, prefix: str
) -> Iterator[tuple[str, torch.Tensor]]:
    base_layer = layer.get_base_layer()
    for key, tensor in merged_state_tensors(base_layer, None, no_gather, prefix):
        if key == f"{prefix}weight":
            tensor = _merged_weight(layer, tensor, adapter)
        yield key, tensor


@torch.no_grad()
def _merged_weight(layer: BaseTunerLayer, weight: torch.Tensor, adapter: str | None) -> torch.Tensor:
    """weight + peft's delta of `adapter` (alpha / r scaling included), summed in fp32."""
    if layer.merged:  # the base weight would already hold their deltas
        raise RuntimeError(
            f"{type(layer).__name__}: adapters {layer.merged_adapters} are merged into the base"
        )
    if adapter is None or adapter not in layer.lora_A:
        return weight
    if adapter in layer.lora_variant or layer.lora_bias.get(adapter):  # DoRA & co merge differently
        raise NotImplementedError(f"exporting a LoRA variant or LoRA bias (adapter {adapter!r})")
    delta = layer.get_delta_weight(adapter)
    return (weight.float() + delta.float()).to(weight.dtype)
