"""Sample grids and quality curves are real PNGs of the expected layout."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sid_ray.eval.curves import save_quality_curve
from sid_ray.eval.grids import save_sample_grid


def test_grid_png_has_one_row_per_sampler(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    rows = {"teacher 32": torch.rand(5, 3, 16, 16, generator=g), "student 4": torch.zeros(5, 3, 16, 16)}
    path = save_sample_grid(rows, tmp_path / "grid.png", column_labels=list("01234"), title="t")
    with Image.open(path) as img:
        width, height = img.size
        assert img.format == "PNG"
    three = save_sample_grid({**rows, "x": torch.ones(5, 3, 16, 16)}, tmp_path / "grid3.png")
    with Image.open(three) as img:
        assert img.size[1] > height and img.size[0] == pytest.approx(width, abs=5)


def test_grid_rejects_ragged_rows(tmp_path) -> None:
    with pytest.raises(ValueError, match="same number"):
        save_sample_grid({"a": torch.zeros(2, 3, 8, 8), "b": torch.zeros(3, 3, 8, 8)}, tmp_path / "g.png")
    with pytest.raises(ValueError, match="column labels"):
        save_sample_grid({"a": torch.zeros(2, 3, 8, 8)}, tmp_path / "g.png", column_labels=["x"])


def test_curve_png(tmp_path) -> None:
    path = save_quality_curve(
        [0, 1, 2, 4], [30.0, 10.0, 5.0, 4.0], [60.0, 85.0, 92.0, 95.0], tmp_path / "c.png",
        alignment_label="prompted-digit probability (%)", teacher_fid=4.2, teacher_alignment=96.0,
    )  # fmt: skip
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 400
    with pytest.raises(ValueError, match="equal"):
        save_quality_curve([0, 1], [1.0], [1.0, 2.0], tmp_path / "bad.png", alignment_label="a")
