"""A transformer's repeated blocks: the unit of compilation and of activation checkpointing."""

from __future__ import annotations

from torch import nn


def repeated_blocks(transformer: nn.Module) -> list[nn.Module]:
    """The transformer's repeated blocks: diffusers' `_repeated_blocks` classes where the model
    declares them (FLUX), else the entries of its `*blocks` ModuleLists (SD3, SANA)."""
    names = set(getattr(transformer, "_repeated_blocks", None) or ())
    if names:
        return [m for m in transformer.modules() if type(m).__name__ in names]
    return [
        block
        for name, child in transformer.named_children()
        if name.endswith("blocks") and isinstance(child, nn.ModuleList)
        for block in child
    ]


def evenly_spread(blocks: list[nn.Module], share: float) -> list[nn.Module]:
    """About `share` of `blocks`, spread evenly over the depth (share 0.5: every second one).

    Block i is taken when the running count floor((i + 1) * share) steps up at i, so any share
    takes round-down(len * share) blocks and never bunches them at one end."""
    return [b for i, b in enumerate(blocks) if int((i + 1) * share) > int(i * share)]
