"""The README's demo at its default length: the quality table's numbers (slow: ~12 minutes).

One run of `jobs/demo.py` (Ray Data, 2 ZeRO-3 workers, 12.8 kimg, 2,000 evaluation samples)
feeds every test here. The CPU run is deterministic: on this project's machine it prints teacher
32 steps 8.258 / 90.63, 4 steps 16.375 / 95.90, student 1 step 16.730 / 93.03, 4 steps
12.105 / 88.23 (FID / prompted-digit probability %).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict[tuple[str, int], dict]:
    out = tmp_path_factory.mktemp("demo")
    cmd = [
        sys.executable,
        str(ROOT / "jobs" / "demo.py"),
        "--set",
        f"output_dir={out}",
        "--set",
        f"tracking.mlflow_uri=sqlite:///{out / 'mlflow.db'}",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, "RAY_ADDRESS": ""}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((out / "demo-digits" / "eval" / "quality.json").read_text())["rows"]
    return {("teacher" if r["name"].startswith("teacher") else "student", r["steps"]): r for r in rows}


def test_the_student_beats_the_teacher_at_four_steps(table):
    student, teacher4, teacher32 = table["student", 4], table["teacher", 4], table["teacher", 32]
    assert student["num_samples"] == 2000
    # measured 12.1 vs 16.4 (0.74x) and 1.47x the 32-step teacher's 8.26
    assert student["fid"] <= 0.85 * teacher4["fid"]
    assert student["fid"] <= 1.6 * teacher32["fid"]
    # measured 88.2 vs 90.6
    assert student["alignment"] >= teacher32["alignment"] - 3.0
    # four steps of the student are better than its first step alone (16.7)
    assert student["fid"] < table["student", 1]["fid"]


@pytest.mark.xfail(
    strict=True,
    reason="issue 5's bar is not reached: the 4-step student plateaus at ~1.25x the teacher's 32-step "
    "(ODE) FID even at 102 kimg, between that and the teacher's own reverse-SDE FID (~15, the distribution "
    "its scores define); the demo's 12.8 kimg gives 1.47x (benchmarks/results/2026-11-22-digits-recipe.md)",
)
def test_issue_quality_bar(table):
    student, teacher4, teacher32 = table["student", 4], table["teacher", 4], table["teacher", 32]
    assert student["fid"] <= min(1.1 * teacher32["fid"], 0.5 * teacher4["fid"])
    assert abs(student["alignment"] - teacher32["alignment"]) <= 2.0
