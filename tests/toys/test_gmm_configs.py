"""The generated teachers by config: configs/gmm_d5.yaml is the ring's recipe on the gmm-d5
mixture, and the toy benchmark's helpers take any teacher by name or spec."""

from pathlib import Path

import torch

from benchmarks.toy_gmm import RECIPE, per_step_distances, references, toy_config
from sid_ray.config import load_config
from sid_ray.models.registry import build_adapter
from sid_ray.toys.mixture_family import PRESETS, generated_mixture

ROOT = Path(__file__).resolve().parents[2]


def test_the_d5_config_is_the_ring_recipe_on_the_d5_preset():
    d5, ring = load_config(ROOT / "configs" / "gmm_d5.yaml"), load_config(RECIPE)
    assert (d5.sid, d5.optim, d5.train) == (ring.sid, ring.optim, ring.train)
    adapter = build_adapter(d5)
    assert torch.equal(adapter.mixture.means, generated_mixture(PRESETS["gmm-d5"]).means)


def test_toy_config_takes_the_teacher_by_name_or_spec():
    assert toy_config(4, teacher="gmm-d3").model.name == "gmm-d3"
    assert toy_config(1, 2.0, teacher="gmm:dim=4").train.total_kimg == 2.0
    assert toy_config(4).model.name == "gmm-ring"


def test_per_step_distances_read_every_intermediate_output():
    """A generator that returns the teacher's x0 estimate: k = 1 collapses onto the mean, later
    steps (ancestral-like) spread out, so the per-k distances differ and shrink with k."""
    adapter = build_adapter(toy_config(4, teacher="gmm-d2"))
    cond, truth, _ = references(adapter, 1000)
    distances, mixed = per_step_distances(adapter.teacher, 4, cond, truth)
    assert len(distances) == 4 and distances[3] < distances[0]
    assert mixed <= max(distances)  # squared energy distance is convex in the sample law
