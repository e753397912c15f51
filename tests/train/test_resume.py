"""Automatic resume: after a worker is SIGKILLed mid-run, and when a run name is started again."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from sid_ray.train.launcher import launch
from tests.train.conftest import toy_config

# A resumed run restores F's and G's fp32 weights and Adam states bit for bit and re-derives the
# noise, k and prompts of every later iteration from (seed, iteration): only the order of
# float32 reductions could differ, so the tolerance is float32 rounding, not "close enough".
GENERATOR_RTOL = 1e-6
BATCH = 8
TOTAL_ITERATIONS = 16
CHECKPOINT_EVERY = 4  # iterations


def _config(tmp_path, name: str, iterations: int = TOTAL_ITERATIONS):
    return toy_config(
        tmp_path,
        name,
        f"train.total_kimg={iterations * BATCH / 1000}",
        f"train.checkpoint_every_kimg={CHECKPOINT_EVERY * BATCH / 1000}",
        "train.max_failures=2",
    )


def _generator(result) -> torch.Tensor:
    state = load_file(result.export_dir / "generator.safetensors")
    return torch.cat([state[k].double().flatten() for k in sorted(state)])


def _train_workers_of_this_process() -> list[psutil.Process]:
    """Ray Train worker processes of the cluster this test started (its own descendants only)."""
    out = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def _assert_continuous(rows: list[dict], resumed_at: int) -> None:
    """Iterations 1..N logged in order, except that the resume restarts right after `resumed_at`."""
    first_after = next(i for i, r in enumerate(rows) if r.get("resumed_from_kimg") is not None)
    after = [r["iteration"] for r in rows[first_after:]]
    assert after == list(range(resumed_at + 1, TOTAL_ITERATIONS + 1))
    for r in rows:  # kimg is exactly images seen, before and after the resume
        assert r["kimg"] == pytest.approx(r["iteration"] * BATCH / 1000, abs=1e-12)


@pytest.fixture(scope="module")
def reference(ray_cluster, tmp_path_factory):
    return launch(_config(tmp_path_factory.mktemp("ref"), "uninterrupted"), show_progress=False)


@pytest.mark.ray
@pytest.mark.slow
def test_sigkilled_worker_resumes_from_last_checkpoint(ray_cluster, reference, tmp_path):
    config = _config(tmp_path, "killed")
    run_dir = tmp_path / "killed"
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=launch(config, show_progress=False)))
    thread.start()
    # kill once Ray Train has *registered* the first checkpoint (files in storage are not enough:
    # a checkpoint counts only after every rank's report of it went through)
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    first = f"checkpoint_{CHECKPOINT_EVERY:08d}"
    deadline = time.time() + 300
    while not (snapshot.exists() and first in snapshot.read_text()):
        assert time.time() < deadline and thread.is_alive(), "no first checkpoint"
        time.sleep(0.05)
    victims = _train_workers_of_this_process()
    assert len(victims) == 2, victims
    victims[-1].send_signal(signal.SIGKILL)
    thread.join(timeout=600)
    result = outcome["result"]

    rows = result.rows
    resumed = [r for r in rows if r.get("resumed_from_kimg") is not None]
    assert len(resumed) == 1, "the run did not resume exactly once"
    resumed_at = round(resumed[0]["resumed_from_kimg"] * 1000 / BATCH)
    assert resumed_at % CHECKPOINT_EVERY == 0 and resumed_at >= CHECKPOINT_EVERY
    _assert_continuous(rows, resumed_at)
    assert result.metrics["iteration"] == TOTAL_ITERATIONS

    # the losses after the resume are the uninterrupted run's, iteration by iteration
    ref_rows = {r["iteration"]: r for r in reference.rows}
    for r in rows[rows.index(resumed[0]) :]:
        for key in ("loss/fake", "loss/generator"):
            assert r[key] == pytest.approx(ref_rows[r["iteration"]][key], rel=1e-5), (r["iteration"], key)

    ref, got = _generator(reference), _generator(result)
    relative = float((got - ref).norm() / ref.norm())
    print(
        f"killed at >= iteration {CHECKPOINT_EVERY}, resumed from {resumed_at}: |G - G_ref|/|G_ref| = {relative:.2e}"
    )
    assert relative <= GENERATOR_RTOL


@pytest.mark.ray
@pytest.mark.slow
def test_same_run_name_resumes(ray_cluster, reference, tmp_path):
    half = launch(_config(tmp_path, "again", TOTAL_ITERATIONS // 2), show_progress=False)
    assert half.metrics["iteration"] == TOTAL_ITERATIONS // 2
    full = launch(_config(tmp_path, "again"), show_progress=False)
    assert full.rows[0]["resumed_from_kimg"] == pytest.approx(TOTAL_ITERATIONS // 2 * BATCH / 1000)
    _assert_continuous(full.rows, TOTAL_ITERATIONS // 2)
    relative = float((_generator(full) - _generator(reference)).norm() / _generator(reference).norm())
    print(f"restarted by name at iteration {TOTAL_ITERATIONS // 2}: |G - G_ref|/|G_ref| = {relative:.2e}")
    assert relative <= GENERATOR_RTOL
    assert Path(full.run_dir, "config.yaml").is_file()
    # started once more after its last checkpoint (as a sweep resumed after Ctrl-C restarts a
    # trial that finished after Tune's last record of it): it reports where it ended
    again = launch(_config(tmp_path, "again"), show_progress=False)
    assert len(again.rows) == 1 and again.rows[0]["resumed_from_kimg"] == pytest.approx(full.rows[-1]["kimg"])
    ended = ("iteration", "kimg", "loss/fake", "loss/generator")
    assert {k: again.rows[0][k] for k in ended} == {k: full.rows[-1][k] for k in ended}
