"""Non-finite gradients become finite before any optimiser step (shared/SID.md section 4).

Implemented as tensor hooks on the parameters, so it works the same under plain torch and under
DeepSpeed (whose ZeRO hooks run after a parameter's gradient is computed, i.e. after ours).
The number of non-finite gradient elements replaced is counted on the device, without a sync.
"""

from __future__ import annotations

import torch

# What the reference code substitutes for +-inf; NaN becomes 0.
INF_REPLACEMENT = 1e5


class GradientSanitizer:
    """Registers the NaN/inf -> finite hooks on every trainable parameter of a module."""

    def __init__(self, module: torch.nn.Module):
        self.non_finite = None
        self._handles = [
            p.register_hook(self._hook_for(name)) for name, p in module.named_parameters() if p.requires_grad
        ]

    def _hook_for(self, name: str):
        def hook(grad: torch.Tensor | None) -> torch.Tensor:
            if grad is None:  # autograd passed an undefined gradient: the optimiser would fail obscurely
                # seen from an inductor-compiled block at FLUX.1-dev size (benchmarks/results)
                raise RuntimeError(
                    f"no gradient reached the trained parameter {name} in this backward pass: a "
                    "backward (a compiled graph or a custom function) dropped it"
                )
            return self._sanitize(grad)

        return hook

    def _sanitize(self, grad: torch.Tensor) -> torch.Tensor:
        bad = (~torch.isfinite(grad)).sum()
        self.non_finite = bad if self.non_finite is None else self.non_finite + bad
        return torch.nan_to_num(grad, nan=0.0, posinf=INF_REPLACEMENT, neginf=-INF_REPLACEMENT)

    def pop_count(self) -> torch.Tensor | None:
        """The count since the last call (a device tensor), and reset."""
        count, self.non_finite = self.non_finite, None
        return count

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
