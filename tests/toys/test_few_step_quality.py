"""Few-step SiD earns its steps on exact teachers (issue 17; slow: ~3 minutes a teacher on 2 cores).

On the ring and on generated mixtures of dimensions 2 to 8, with the recipe of
configs/gmm_ring.yaml (one process) at equal training length: the 4-step student's energy
distance to the true distribution is at most the 1-step student's and at most half that of the
exact teacher sampled with 4 Euler steps, and every mode's mass (mean posterior responsibility
under the true mixture) is within 20% of its true weight.
"""

import pytest

from benchmarks.toy_gmm import SAMPLE_SEED, UNCONDITIONAL, per_step_distances, references, toy_config
from sid_ray.eval.toy_metrics import energy_distance, generator_samples, mode_masses, teacher_euler_samples
from sid_ray.models.registry import build_adapter

pytestmark = pytest.mark.slow
SAMPLES = 4000
# Issue 17 is not closed: with k_block 50 (rounds of K) the 4-step student is at parity with the
# 1-step one on the generated teachers, and seed 0 misses a bar on three of them (gmm-d3: 4-step
# 0.0075 vs 1-step 0.0039; gmm-d5: 0.0022 vs 0.0022; gmm-d8: a mode 22% off). Remove these marks
# when the recipe clears the bars (benchmarks/results/2026-12-02-few-step-gmm.md, "still open").
# gmm-ring joins them: with the toy teacher's fit seeded (issue 12) its 1-step student lands at
# 0.0021 and the 4-step one at 0.0038 (the slow suite of 2026-12-03).
OPEN = pytest.mark.xfail(reason="issue 17 open: 4-step at parity with 1-step, not better", strict=False)
TEACHERS = ["gmm-d2"] + [pytest.param(t, marks=OPEN) for t in ("gmm-ring", "gmm-d3", "gmm-d5", "gmm-d8")]


def _student(teacher: str, num_steps: int, cond, dim: int):
    from sid_ray.train.local import run_local

    config = toy_config(num_steps, teacher=teacher)
    result = run_local(config, prompts=UNCONDITIONAL, log=None, write_config=False)
    return generator_samples(result.generator, num_steps, cond, dim, SAMPLE_SEED), config, result.generator


@pytest.mark.parametrize("teacher", TEACHERS)
def test_the_4_step_student_beats_the_1_step_one_and_4_step_euler(teacher):
    adapter = build_adapter(toy_config(4, teacher=teacher))
    mixture, dim = adapter.mixture, adapter.mixture.dim
    cond, truth, _ = references(adapter, SAMPLES)
    euler4 = energy_distance(teacher_euler_samples(adapter.teacher, 4, cond, dim, SAMPLE_SEED), truth)
    one_step, _, _ = _student(teacher, 1, cond, dim)
    four_step, config, generator = _student(teacher, 4, cond, dim)
    per_k, mixed = per_step_distances(generator, 4, cond, truth)
    d1, d4 = energy_distance(one_step, truth), energy_distance(four_step, truth)
    weights = mixture.marginal_weights
    error = ((mode_masses(four_step, mixture) - weights).abs() / weights).max().item()
    print(
        f"{teacher} ({config.train.total_kimg:g} kimg, k_block {config.sid.k_block}): 4-step {d4:.4f}, "
        f"1-step {d1:.4f}, 4-step Euler {euler4:.4f}; worst 4-step mode-mass error {error:.3f}; "
        f"after k = 1..4 steps {' '.join(f'{d:.4f}' for d in per_k)} (mixture {mixed:.4f})"
    )
    assert d4 <= d1
    assert d4 <= 0.5 * euler4
    assert error <= 0.2
