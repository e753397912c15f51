"""A batch of conditions as named tensors, with its null (unconditional) twin."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TensorConditioning:
    """Per-sample tensors (batch dimension first) plus the null condition.

    `null` holds the same keys with a batch dimension of 1 (the empty prompt's embeddings, the
    null class label); it is broadcast to the batch on demand, so it is computed once and cached.
    """

    tensors: dict[str, torch.Tensor]
    null: dict[str, torch.Tensor]

    @property
    def batch_size(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def unconditional(self) -> TensorConditioning:
        b = self.batch_size
        expanded = {k: v.expand(b, *v.shape[1:]) for k, v in self.null.items()}
        return TensorConditioning(expanded, self.null)

    def with_unconditional(self) -> TensorConditioning:
        uncond = self.unconditional().tensors
        both = {k: torch.cat([v, uncond[k].to(v.dtype)]) for k, v in self.tensors.items()}
        return TensorConditioning(both, self.null)

    def doubled(self) -> TensorConditioning:
        """The batch twice over (2B): one network pass on fakes and reals with the same prompts."""
        return TensorConditioning.concat([self, self])

    def to(self, device=None, dtype=None) -> TensorConditioning:
        def move(v: torch.Tensor) -> torch.Tensor:
            return v.to(device=device, dtype=dtype if v.is_floating_point() else None)

        return TensorConditioning(
            {k: move(v) for k, v in self.tensors.items()}, {k: move(v) for k, v in self.null.items()}
        )

    def select(self, index) -> TensorConditioning:
        """Rows `index` (a slice, a list or a tensor of indices) of the batch."""
        return TensorConditioning({k: v[index] for k, v in self.tensors.items()}, self.null)

    @staticmethod
    def concat(parts: list[TensorConditioning]) -> TensorConditioning:
        keys = parts[0].tensors.keys()
        return TensorConditioning({k: torch.cat([p.tensors[k] for p in parts]) for k in keys}, parts[0].null)
