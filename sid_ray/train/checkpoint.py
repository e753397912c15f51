"""What a checkpoint holds and how every rank writes and reads its part.

Layout of one checkpoint folder (all ranks' files merged by Ray Train's `report`):
    fake/state/...        DeepSpeed state of F (each rank its ZeRO partition + optimiser)
    generator/state/...   DeepSpeed state of G
    rng/rank{r}.pt        torch, numpy and python RNG states of rank r
    placement/rank{r}.json  the Ray node rank r ran on
    train_state.json      counters (rank 0): iteration, kimg, data position, seed, MLflow run id
    ema/rank{r}.pt        rank r's shard of the generator EMA (when train.ema_halflife_kimg > 0)
    export/               only in the final checkpoint: the consolidated generator

The noise of every micro-batch and the k of every iteration are pure functions of
(seed, iteration, noise key) (sid/step.py, sid/rollout.py), so restoring the iteration counter
restores those streams exactly; the global RNG states are kept for anything else that draws.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import deepspeed
import numpy as np
import ray
import torch
from safetensors.torch import save_file

from sid_ray.models.adapter import TeacherAdapter
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.engines import DeepSpeedTrainedNetwork

TAG = "state"
STATE_FILE = "train_state.json"
EXPORT_DIR = "export"
GENERATOR_WEIGHTS = "generator.safetensors"


@dataclass
class TrainState:
    """The counters that say where a run is."""

    iteration: int = 0  # iterations done; the next one to run has this index
    kimg: float = 0.0  # thousands of generator images seen (= iteration * batch / 1000)
    data_position: int = 0  # global prompt-stream position of the next iteration (= iteration * batch)
    seed: int = 0  # seed of the noise, k and prompt streams
    k_stream: str = "sid-k/{seed}/{iteration}"  # how k is derived (documentation for readers)
    mlflow_run_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(
    folder: Path,
    fake: DeepSpeedTrainedNetwork,
    generator: DeepSpeedTrainedNetwork,
    state: TrainState,
    rank: int,
    ema: ParameterEMA | None = None,
) -> None:
    """Write this rank's part (collective: every rank must call it)."""
    folder.mkdir(parents=True, exist_ok=True)
    # save_checkpoint is collective; every rank writes its own ZeRO partition files
    fake.engine.save_checkpoint(str(folder / "fake"), tag=TAG)
    generator.engine.save_checkpoint(str(folder / "generator"), tag=TAG)
    if ema is not None:  # this rank's shard of the generator's EMA (sharded like the weights)
        (folder / "ema").mkdir(exist_ok=True)
        torch.save(ema.state_dict(), folder / "ema" / f"rank{rank}.pt")
    (folder / "rng").mkdir(exist_ok=True)
    torch.save(_rng_state(), folder / "rng" / f"rank{rank}.pt")
    # where each rank ran: for debugging placement (and the multi-node test reads it)
    (folder / "placement").mkdir(exist_ok=True)
    node = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
    (folder / "placement" / f"rank{rank}.json").write_text(json.dumps(node))
    if rank == 0:
        (folder / STATE_FILE).write_text(state.to_json())


def load(
    folder: Path,
    fake: DeepSpeedTrainedNetwork,
    generator: DeepSpeedTrainedNetwork,
    rank: int,
    ema: ParameterEMA | None = None,
) -> TrainState:
    """Restore F, G (weights and optimiser), the RNG states and the counters (collective)."""
    for network, name in ((fake, "fake"), (generator, "generator")):
        path, _ = network.engine.load_checkpoint(
            str(folder / name), tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"checkpoint {folder} has no DeepSpeed state for {name}")
    ema_file = folder / "ema" / f"rank{rank}.pt"
    if ema is not None and ema_file.is_file():  # else: a run that turned the EMA on mid-way
        ema.load_state_dict(torch.load(ema_file, weights_only=True))
    rng_file = folder / "rng" / f"rank{rank}.pt"
    if rng_file.is_file():  # a run resumed on a different world size has no file for new ranks
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return TrainState(**json.loads((folder / STATE_FILE).read_text()))


def gathered_state_dict(network: DeepSpeedTrainedNetwork) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of a ZeRO-2/3 module, on every rank (collective)."""
    module = network.engine.module
    params = list(module.parameters())
    # under ZeRO-3 every parameter is a shard until gathered; under ZeRO-2 this is a no-op
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def export_generator(
    folder: Path,
    generator: DeepSpeedTrainedNetwork,
    make_adapter,
    num_steps: int,
    rank: int,
    ema: ParameterEMA | None = None,
    pipeline: bool = True,
) -> Path | None:
    """Consolidate G and write it under `folder/export` (rank 0 writes; all ranks must call).

    Always a safetensors file of the generator module (every checkpoint has one, so a run's
    quality can be plotted against kimg); with `pipeline`, DiT adapters also write a stock
    diffusers pipeline folder that samples in `num_steps` steps. The pipeline is built from a fresh
    adapter (`make_adapter()`): the training adapter's teacher is ZeRO-3 partitioned, and any
    copy of it would carry DeepSpeed's shards and hooks instead of weights.
    """
    # the generator to evaluate is the EMA when one is kept (as in the single-process loop)
    with ema.swapped_in() if ema is not None else contextlib.nullcontext():
        state = gathered_state_dict(generator)
    if rank != 0:
        return None
    out = folder / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, out / GENERATOR_WEIGHTS)
    if not pipeline:
        return out
    adapter = make_adapter()
    if type(adapter).export is not TeacherAdapter.export:
        # the toy teachers have no pipeline format; for them the safetensors file is the export
        module = adapter.make_trainable_copy("generator")
        module.load_state_dict(state)
        adapter.export(module, out / "pipeline", num_steps)
    return out
