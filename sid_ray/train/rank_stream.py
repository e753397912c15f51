"""A worker's rows of the prompt stream, from the iteration it (re)starts at.

The worker tells the run's `StreamStart` actor where it starts before it asks Ray Train for its
shard, so the stream is built from there (`RankPromptStream.configure`): a resumed run reads no
row of the iterations it already trained, embeddings included. Should the stream still begin
earlier (no actor: a trainer built without `launcher.build_trainer`), the rows before are
skipped here; a stream that begins later than the checkpoint is an error, never a silent gap.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import ray
import ray.train

from sid_ray.config.schema import RunConfig
from sid_ray.data.prompts import PROMPT_STREAM
from sid_ray.data.stream_start import stream_start_name
from sid_ray.train.cached_prompts import stream_prompts
from sid_ray.train.ds_config import check_batch
from sid_ray.train.loop import Batch


def announce_start(config: RunConfig, start: int) -> bool:
    """Send `start` to the run's StreamStart actor; False when the driver made none."""
    try:
        handle = ray.get_actor(stream_start_name(config.name))
    except ValueError:
        return False
    ray.get(handle.set.remote(start))
    return True


def rank_batches(config: RunConfig, rank: int, start: int) -> Iterator[Batch]:
    """This rank's rows of each iteration from iteration `start` on (micro batch x accumulation
    prompts, and their real latents in data-aided runs), each batch's stream position checked."""
    train = config.train
    per_rank = train.micro_batch_size * check_batch(config)
    announce_start(config, start)  # before the shard exists: its stream then begins at `start`
    shard = ray.train.get_dataset_shard(PROMPT_STREAM)
    to_prompts = stream_prompts(config)  # the texts, or the embedding cache's rows
    batches = iter(shard.iter_batches(batch_size=per_rank, batch_format="numpy", prefetch_batches=2))
    first = next(batches)
    begins_at = (int(first["position"][0]) - rank * per_rank) // train.batch_size
    if begins_at > start:
        raise RuntimeError(f"rank {rank}: the prompt stream begins at iteration {begins_at}, after {start}")
    batches = itertools.chain([first], batches)
    for _ in range(start - begins_at):  # only without the actor: rows of trained iterations
        next(batches)
    for iteration, batch in enumerate(batches, start=start):
        expected = iteration * train.batch_size + rank * per_rank
        if int(batch["position"][0]) != expected or len(batch["position"]) != per_rank:
            raise RuntimeError(
                f"rank {rank}: prompt stream out of step at iteration {iteration} "
                f"(position {int(batch['position'][0])}, expected {expected})"
            )
        # data-aided runs: the captions' real latents ride in the same rows (RankPairStream)
        yield to_prompts(batch), batch.get("latents")
