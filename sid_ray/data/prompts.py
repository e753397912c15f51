"""Prompt sources and the deterministic per-rank prompt stream fed to Ray Train workers.

The order of prompts is a pure function of (prompt list, seed, position): epoch e is the list
shuffled by `torch.randperm` seeded with seed * 1_000_003 + e, exactly as the single-process
loop's `PromptCycle` serves them. Iteration i of a run with global batch B uses positions
[i B, (i + 1) B); rank r takes the contiguous slice [i B + r b, i B + (r + 1) b) with b = B /
world, which is micro-batches r * accumulation ... (r + 1) * accumulation - 1 of the single
process. So 2 workers see exactly the prompts the single process gives the same noise keys,
and a resumed run continues at position i B without replaying anything: its stream starts there
(`sid_ray.data.stream_start`), the rows before are never read.

Each rank's stream is its own Ray Dataset (`RankPromptStream.configure`): `get_dataset_shard`
in a worker returns the iterator of its rank's rows; no rank ever reads another's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from ray.train import DataConfig

from sid_ray.config.schema import DataConfig as PromptDataConfig
from sid_ray.data.prompt_sources import read_prompt_set
from sid_ray.data.stream_start import first_rows

# Used when `data.prompts` is empty and the teacher has no built-in prompt list of its own
# (the toy adapters have their own lists: `TeacherAdapter.default_prompts`): enough
# variety for smoke runs and tests.
BUILTIN_PROMPTS = (
    "a photo of a red cat sitting on a wooden table",
    "a watercolor painting of a lighthouse at dawn",
    "two dogs playing in the snow",
    "a bowl of ramen with a soft boiled egg, studio lighting",
    "an astronaut riding a horse on the moon",
    "a cozy reading nook with a window and rain outside",
    "a macro photo of a dew drop on a leaf",
    "a city skyline at night with neon reflections",
    "",  # the empty prompt: the null condition also gets trained on
)

PROMPT_STREAM = "prompts"  # the dataset name workers ask `get_dataset_shard` for


def epoch_order(num_prompts: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of epoch `epoch` (same law as `sid_ray.train.prompt_cycle.PromptCycle`)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_prompts, generator=g).numpy()


def prompt_indices(positions: np.ndarray, num_prompts: int, seed: int) -> np.ndarray:
    """Index into the prompt list of each global stream position."""
    epochs, offsets = np.divmod(np.asarray(positions, dtype=np.int64), num_prompts)
    out = np.empty_like(offsets)
    for epoch in np.unique(epochs):
        mask = epochs == epoch
        out[mask] = _cached_order(num_prompts, seed, int(epoch))[offsets[mask]]
    return out


@lru_cache(maxsize=4)
def _cached_order(num_prompts: int, seed: int, epoch: int) -> np.ndarray:
    return epoch_order(num_prompts, seed, epoch)


def rank_positions(local: np.ndarray, rank: int, world: int, batch_size: int) -> np.ndarray:
    """Global positions of a rank's local rows 0, 1, 2, ... (b = batch_size / world per iteration)."""
    per_rank = batch_size // world
    iteration, offset = np.divmod(np.asarray(local, dtype=np.int64), per_rank)
    return iteration * batch_size + rank * per_rank + offset


class RankPrompts:
    """Ray Data UDF: local row ids of one rank -> its global positions and prompt texts."""

    def __init__(self, prompts: list[str], seed: int, rank: int, world: int, batch_size: int):
        self.prompts = np.asarray(prompts, dtype=object)
        self.seed, self.rank, self.world, self.batch_size = seed, rank, world, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = rank_positions(batch["id"], self.rank, self.world, self.batch_size)
        index = prompt_indices(positions, len(self.prompts), self.seed)
        return {"position": positions, "prompt": self.prompts[index]}


class RankPromptStream(DataConfig):
    """A Ray Train DataConfig that gives each rank its own slice of the prompt stream.

    The trainer's dataset is `ray.data.range(rows_per_rank)` (local row ids); `configure`, which
    Ray Train calls once per worker group (also after a restart), maps it per rank to
    (position, prompt). Ray Data's default `streaming_split` hands blocks to whichever rank has
    the fewest rows, so which prompt lands on which rank (and on which noise key) would not be
    reproducible, and a resumed run could not continue the exact stream.
    """

    def __init__(self, prompts: list[str], seed: int, batch_size: int):
        super().__init__(datasets_to_split=[])
        self.prompts, self.seed, self.batch_size = list(prompts), seed, batch_size
        self.start = None  # the run's StreamStart actor (sid_ray.data.stream_start), when resumable

    def rank_udf(self, rank: int, world: int):
        """The map_batches UDF of one rank's rows (subclasses serve other rows, same positions)."""
        return RankPrompts(self.prompts, self.seed, rank, world, self.batch_size)

    def rows_per_batch(self) -> int:
        return 4096

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        base = datasets[PROMPT_STREAM]
        # a resumed run: the rows of trained iterations go before the UDF reads anything for them
        skipped = first_rows(self.start, self.batch_size // world_size)
        if skipped:
            base = base.filter(expr=f"id >= {skipped}")
        rows = self.rows_per_batch()
        per_rank = []
        for rank in range(world_size):
            ds = base.map_batches(self.rank_udf(rank, world_size), batch_format="numpy", batch_size=rows)
            per_rank.append({PROMPT_STREAM: ds.iterator()})
        return per_rank


def rows_per_rank(total_iterations: int, batch_size: int, world: int) -> int:
    return total_iterations * (batch_size // world)


def read_prompts(
    data: PromptDataConfig, default: list[str] | None = None, log: Callable[[str], None] = print
) -> list[str]:
    """The prompt list of a run: `data.prompts` read with Ray Data (local, s3://, gs://), cleaned
    and counted by `sid_ray.data.prompt_sources` (rows it dropped are logged, never silent); or
    `default` when unset."""
    return read_prompts_counted(data, default, log)[0]


def read_prompts_counted(
    data: PromptDataConfig, default: list[str] | None = None, log: Callable[[str], None] = print
) -> tuple[list[str], dict[str, int]]:
    """`read_prompts` and its counts ({"lines", "kept", one per kind of dropped row}) for MLflow."""
    if not data.prompts:
        prompts = list(default) if default else list(BUILTIN_PROMPTS)
        return prompts, {"lines": len(prompts), "kept": len(prompts)}
    prompt_set = read_prompt_set(data)
    if prompt_set.counts["lines"] != prompt_set.counts["kept"] or prompt_set.counts.get("empty_file"):
        log(f"[prompts] {prompt_set.summary()}")
    return prompt_set.prompts, dict(prompt_set.counts)


def write_prompts_txt(prompts: list[str], path: str | Path) -> Path:
    """A .txt prompt file (one a line); used by tests and examples."""
    path = Path(path)
    path.write_text("\n".join(prompts) + "\n")
    return path
