"""A deterministic, resumable prompt order for single-process runs."""

from __future__ import annotations

import torch


class PromptCycle:
    """Endless epochs over `prompts`, each shuffled by (seed, epoch); position = prompts served."""

    def __init__(self, prompts: list[str], seed: int = 0, position: int = 0):
        if not prompts:
            raise ValueError("the prompt list is empty")
        self.prompts, self.seed, self.position = list(prompts), seed, position

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.prompts), generator=g).tolist()

    def take(self, n: int) -> list[str]:
        out = []
        while len(out) < n:
            epoch, offset = divmod(self.position, len(self.prompts))
            order = self._order(epoch)
            chunk = order[offset : offset + n - len(out)]
            out += [self.prompts[i] for i in chunk]
            self.position += len(chunk)
        return out
