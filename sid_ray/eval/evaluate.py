"""One row of the quality table: sample a fixed prompt set with a sampler, score FID and alignment.

A sampler maps (conditioning, noise latents) to clean latents in the adapter's layout: the
teacher's N-step Euler (`euler_sampler`) or the distilled generator's K-step roll-out
(`generator_sampler`). `evaluate_sampler` encodes the prompts, draws each sample's noise from its
own seed, times the sampling and decoding (seconds per image), and scores the images with a
`QualityMetrics` (the digits toy's classifier FID and prompted-digit probability, or Inception
FID and CLIP score for real teachers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch

from sid_ray.eval.prompts import PromptSet
from sid_ray.models.adapter import TeacherAdapter
from sid_ray.models.base import FlowModel
from sid_ray.models.conditioning import TensorConditioning
from sid_ray.models.sampling import euler_sample, sid_sample
from sid_ray.sid.sampling import ancestral_sample, uniform_times

#: (conditioning of B prompts, noise latents (B, *latent_shape)) -> clean latents, same layout
Sampler = Callable[[TensorConditioning, torch.Tensor], torch.Tensor]


class QualityMetrics(Protocol):
    """Scores a generated image set against the fixed reference of its world."""

    #: what the alignment number is, with its unit, e.g. "prompted-digit probability (%)"
    alignment_name: str

    def fid(self, images: torch.Tensor) -> float:
        """FID of images (N, 3, H, W) in [0, 1] against the reference set."""

    def alignment(self, images: torch.Tensor, prompts: PromptSet) -> float:
        """Mean text-image alignment of images and their prompts (higher is better)."""


@dataclass
class EvalRow:
    """One line of the quality table."""

    name: str
    steps: int
    fid: float
    alignment: float
    seconds_per_image: float
    num_samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def euler_sampler(model: FlowModel, num_steps: int, guidance: float = 1.0) -> Sampler:
    """The teacher's deterministic Euler on uniform times t = 1 - i/N, at CFG scale `guidance`."""
    sigmas = uniform_times(num_steps)

    def sample(cond: TensorConditioning, z: torch.Tensor) -> torch.Tensor:
        return euler_sample(model, z, cond, sigmas, guidance=guidance)

    return sample


def ancestral_sampler(model: FlowModel, num_steps: int, guidance: float = 1.0, seed: int = 0) -> Sampler:
    """The teacher's ancestral (reverse-SDE) sampler on uniform times t = 1 - i/N, at CFG scale
    `guidance`; its noise comes from a generator seeded with `seed` anew for every call."""
    times = uniform_times(num_steps)

    def sample(cond: TensorConditioning, z: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=z.device).manual_seed(seed)
        return ancestral_sample(lambda x, t: model.guided_velocity(x, t, cond, guidance), z, times, gen)

    return sample


def generator_sampler(
    model: FlowModel,
    num_steps: int,
    max_steps: int | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    time_shift: float = 1.0,
) -> Sampler:
    """The distilled generator: k = `num_steps` of its K = `max_steps` roll-out (SID.md 3).

    `num_steps < max_steps` evaluates the first k steps of the K-step generator (its 1-step
    output is x0_hat after t = 1); the fresh noise of later steps comes from a generator seeded
    with `seed` anew for every call, so the same batches give the same images. `time_shift` is the
    run's `sid.rollout_time_shift`.
    """
    max_steps = max_steps or num_steps

    def sample(cond: TensorConditioning, z: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=z.device).manual_seed(seed)
        if num_steps == max_steps:
            return sid_sample(
                model, z, cond, num_steps, guidance=guidance, generator=gen, time_shift=time_shift
            )
        from sid_ray.sid.rollout import rollout

        def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model.guided_velocity(x_t, t, cond, guidance)

        with torch.no_grad():
            return rollout(velocity, z, num_steps, max_steps, generator=gen, time_shift=time_shift)

    return sample


@torch.no_grad()
def sample_images(
    adapter: TeacherAdapter, sampler: Sampler, prompts: PromptSet, batch_size: int = 250
) -> tuple[torch.Tensor, float]:
    """Images (N, 3, H, W) in [0, 1] for a prompt set, and the seconds spent sampling + decoding.

    Prompt encoding is outside the timing: training and serving cache embeddings, and the table
    compares samplers, not text encoders.
    """
    device = adapter.device  # sample where the teacher lives
    images, seconds = [], 0.0
    for start in range(0, len(prompts), batch_size):
        part = prompts.slice(start, start + batch_size)
        cond = adapter.encode_prompts(list(part.prompts)).to(device)
        z = part.noise(tuple(adapter.latent_shape)).to(device)  # drawn on the CPU: same on any device
        begin = time.perf_counter()
        images.append(adapter.decode(sampler(cond, z)).cpu())
        seconds += time.perf_counter() - begin
    return torch.cat(images), seconds


def evaluate_sampler(
    name: str,
    adapter: TeacherAdapter,
    sampler: Sampler,
    steps: int,
    prompts: PromptSet,
    metrics: QualityMetrics,
    batch_size: int = 250,
) -> tuple[EvalRow, torch.Tensor]:
    """The table row of one sampler on `prompts`, and its images (for grids)."""
    images, seconds = sample_images(adapter, sampler, prompts, batch_size)
    row = EvalRow(
        name=name,
        steps=steps,
        fid=metrics.fid(images),
        alignment=metrics.alignment(images, prompts),
        seconds_per_image=seconds / len(prompts),
        num_samples=len(prompts),
    )
    return row, images


def format_table(rows: Sequence[EvalRow], alignment_name: str) -> str:
    """A fixed-width text table of rows (the demo prints it)."""
    header = f"{'sampler':<24} {'steps':>5} {'FID':>9} {alignment_name:>32} {'s/image':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.name:<24} {r.steps:>5} {r.fid:>9.3f} {r.alignment:>32.2f} {r.seconds_per_image:>10.5f}"
        )
    return "\n".join(lines)


def write_comparison_grid(
    images_by_sampler: dict[str, torch.Tensor],
    prompts: PromptSet,
    path: str | Path,
    num_columns: int = 10,
    title: str | None = None,
) -> Path:
    """A PNG grid: the first `num_columns` samples of each sampler, one row each, prompts on top.

    Rows share prompts and noise seeds, so a column compares samplers on the same input.
    """
    from sid_ray.eval.grids import save_sample_grid  # matplotlib: only where a grid is drawn

    rows = {name: images[:num_columns] for name, images in images_by_sampler.items()}
    labels = [p.removeprefix("a handwritten ") for p in prompts.prompts[:num_columns]]
    return save_sample_grid(rows, path, column_labels=labels, title=title)
