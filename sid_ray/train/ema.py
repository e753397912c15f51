"""An exponential moving average of the generator's weights, with a half-life in kimg.

SiD's generator and fake network play a two-player game whose iterates oscillate around the
solution; the average of recent generators is closer to it than the last one (the reference SiD
code evaluates an EMA too). The average lives next to the weights it follows: for a ZeRO-3
partitioned parameter that is this rank's partition (`ds_tensor`), so the EMA is sharded exactly
like the weights and costs no communication; `swapped_in()` puts it in place for export or
evaluation and restores the trained weights afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _local(p: torch.nn.Parameter) -> torch.Tensor:
    # ZeRO-3 keeps this rank's partition in ds_tensor (p.data is empty outside a gather)
    return p.ds_tensor if hasattr(p, "ds_tensor") else p.data


class ParameterEMA:
    """EMA of a module's parameters; `update(images)` after each optimiser step."""

    def __init__(self, module: torch.nn.Module, halflife_kimg: float):
        if halflife_kimg <= 0:
            raise ValueError(f"halflife_kimg must be positive, got {halflife_kimg}")
        self.halflife_images = halflife_kimg * 1000
        self.params = list(module.parameters())
        # the average is kept in at least fp32: bf16 cannot hold the small per-step increments
        self.shadow = [
            _local(p).detach().to(torch.promote_types(p.dtype, torch.float32)).clone() for p in self.params
        ]

    @torch.no_grad()
    def update(self, images: int) -> None:
        """Advance by `images` generator images: weight of the past = 0.5 ** (images / halflife)."""
        keep = 0.5 ** (images / self.halflife_images)
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(_local(p).to(s.dtype), 1 - keep)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the module's parameters hold the EMA (the average itself is untouched)."""
        trained = [_local(p).clone() for p in self.params]
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params, strict=True):
                _local(p).copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for saved, p in zip(trained, self.params, strict=True):
                    _local(p).copy_(saved)

    def state_dict(self) -> list[torch.Tensor]:
        return [s.clone() for s in self.shadow]

    def load_state_dict(self, shadow: list[torch.Tensor]) -> None:
        for s, saved in zip(self.shadow, shadow, strict=True):
            s.copy_(saved)
