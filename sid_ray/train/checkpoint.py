"""What a checkpoint holds and how every rank writes and reads its part.

Layout of one checkpoint folder (all ranks' files merged by Ray Train's `report`):
    fake/state/...        DeepSpeed state of F (each rank its ZeRO partition + optimiser)
    generator/state/...   DeepSpeed state of G
    rng/rank{r}.pt        torch, numpy and python RNG states of rank r
    placement/rank{r}.json  the Ray node rank r ran on
    train_state.json      counters (rank 0): iteration, kimg, data position, seed, MLflow run id
    ema/rank{r}.pt        rank r's shard of the generator EMA (when train.ema_halflife_kimg > 0)
    export/generator.safetensors  the consolidated generator module (the EMA when kept): in the
                          final checkpoint, and in the others as train.generator_in_checkpoints says
    export/pipeline/      only in the final checkpoint, for DiT teachers: a stock diffusers folder

The noise of every micro-batch and the k of every iteration are pure functions of
(seed, iteration, noise key) (sid/step.py, sid/rollout.py), so restoring the iteration counter
restores those streams exactly; the global RNG states are kept for anything else that draws.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

import deepspeed
import numpy as np
import ray
import torch
from safetensors.torch import save_file

from sid_ray.config.paths import EXPORT_DIR, GENERATOR_WEIGHTS, PIPELINE_DIR, STATE_FILE
from sid_ray.config.schema import RunConfig
from sid_ray.models.adapter import TeacherAdapter
from sid_ray.models.lora import merged_state_tensors
from sid_ray.train.ema import ParameterEMA
from sid_ray.train.engines import DeepSpeedTrainedNetwork

TAG = "state"


@dataclass
class TrainState:
    """The counters that say where a run is."""

    iteration: int = 0  # iterations done; the next one to run has this index
    kimg: float = 0.0  # thousands of generator images seen (= iteration * batch / 1000)
    data_position: int = 0  # global prompt-stream position of the next iteration (= iteration * batch)
    seed: int = 0  # seed of the noise, k and prompt streams
    k_stream: str = "sid-k/{seed}/{iteration}"  # how k is derived (documentation for readers)
    mlflow_run_id: str = ""
    # the metrics reported with this checkpoint: a run started again after its last checkpoint
    # reports them again, so that Ray Tune sees the finished trial of a sweep resumed after an
    # interrupt as finished (its last record of the trial may predate that checkpoint)
    reported: dict = field(default_factory=dict)

    def advance_to(self, iterations_done: int, batch_size: int) -> None:
        """The counters after `iterations_done` iterations of `batch_size` images."""
        self.iteration = iterations_done
        self.kimg = iterations_done * batch_size / 1000
        self.data_position = iterations_done * batch_size

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


#: "auto" writes the generator into every checkpoint below this size (LoRA weights, the toys;
#: not a full FLUX.1-dev copy, 24 GB in bf16)
AUTO_GENERATOR_MAX_BYTES = 2 * 1024**3


def zero3_gather(params: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
    """The full values of ZeRO-3 partitioned `params`, on every rank, read-only (collective);
    a no-op for parameters DeepSpeed does not partition (ZeRO-2, plain modules)."""
    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def unsharded_bytes(module: torch.nn.Module) -> int:
    """Bytes of `module`'s state once gathered: ZeRO-3 parameters count their full `ds_numel`."""
    params = sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for p in module.parameters())
    return params + sum(b.numel() * b.element_size() for b in module.buffers())


def writes_generator_weights(policy: str, final: bool, nbytes: int) -> bool:
    """Whether a checkpoint carries export/generator.safetensors (`train.generator_in_checkpoints`)."""
    return final or policy == "always" or (policy == "auto" and nbytes < AUTO_GENERATOR_MAX_BYTES)


def gathered_state_dict(module: torch.nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """`module`'s full state dict on rank 0's CPU ({} elsewhere), gathered one submodule at a
    time so that no rank holds more than one submodule's full parameters (collective)."""
    state = {}
    for key, tensor in merged_state_tensors(module, None, zero3_gather):
        if rank == 0:
            state[key] = tensor.to("cpu", copy=True).contiguous()
    return state


def export_generator(
    folder: Path,
    generator: DeepSpeedTrainedNetwork,
    adapter: TeacherAdapter,
    config: RunConfig,
    rank: int,
    ema: ParameterEMA | None = None,
    final: bool = False,
    pipeline_folder: Path | None = None,
) -> Path | None:
    """Write G (its EMA when one is kept) under `folder/export` (rank 0 writes; all ranks must call).

    export/generator.safetensors, the generator module's state dict, is in the final checkpoint
    and in others as `config.train.generator_in_checkpoints` says (so a run's quality can be
    plotted against kimg). The final checkpoint of a DiT teacher also gets export/pipeline, a stock
    diffusers folder sampling in `sid.num_steps` steps, streamed from G's own module and the
    training adapter's other parts: no second teacher is built, and the teacher's weights (ZeRO-3
    partitioned, shared_base mode aside) are never read. `pipeline_folder` puts the pipeline
    elsewhere: the worker writes it straight into the run folder, since a checkpoint folder is
    copied once more into storage by Ray (at FLUX size 24 GB twice, more than a 64 GB disk holds
    beside the checkpoints). Returns the folder on rank 0.
    """
    module = generator.engine.module
    weights = writes_generator_weights(config.train.generator_in_checkpoints, final, unsharded_bytes(module))
    pipeline = final and config.train.export_pipeline and adapter.exports_pipeline
    if not (weights or pipeline):
        return None
    out = folder / EXPORT_DIR
    # the generator to evaluate is the EMA when one is kept (as in the single-process loop)
    with ema.swapped_in() if ema is not None else contextlib.nullcontext():
        if weights:
            state = gathered_state_dict(module, rank)
            if rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                save_file(state, out / GENERATOR_WEIGHTS)
            del state
        if pipeline:
            target = pipeline_folder or out / PIPELINE_DIR
            if rank == 0:  # a resumed run's export replaces the last one whole (its shard count may differ)
                shutil.rmtree(target, ignore_errors=True)
            adapter.export(
                module,
                target,
                config.sid.num_steps,
                gather=zero3_gather,
                write=rank == 0,
                time_shift=config.sid.rollout_time_shift,
            )
    return out if rank == 0 else None
