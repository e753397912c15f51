"""FID and alignment against training progress (kimg), two y-axes, like Figure 4 of the SiD papers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402

FID_COLOR, ALIGNMENT_COLOR = "tab:blue", "tab:red"


def save_quality_curve(
    kimg: Sequence[float],
    fid: Sequence[float],
    alignment: Sequence[float],
    path: str | Path,
    alignment_label: str,
    teacher_fid: float | None = None,
    teacher_alignment: float | None = None,
    teacher_label: str = "teacher",
    title: str | None = None,
) -> Path:
    """Write FID (left axis, lower is better) and alignment (right axis) versus kimg as a PNG.

    The teacher's values, when given, are dashed horizontal lines in the same colours, so the
    plot shows how far the student is from its teacher at every point of training.
    """
    if not (len(kimg) == len(fid) == len(alignment)) or not kimg:
        raise ValueError(
            f"need equal, non-empty series: {len(kimg)} kimg, {len(fid)} FID, {len(alignment)} alignment"
        )
    fig, ax_fid = plt.subplots(figsize=(6.4, 4.0))
    ax_fid.plot(kimg, fid, "o-", color=FID_COLOR, label="FID")
    ax_fid.set_xlabel("training progress (kimg: thousands of generator images)")
    ax_fid.set_ylabel("FID (lower is better)", color=FID_COLOR)
    ax_fid.tick_params(axis="y", labelcolor=FID_COLOR)
    ax_align = ax_fid.twinx()
    ax_align.plot(kimg, alignment, "s-", color=ALIGNMENT_COLOR, label=alignment_label)
    ax_align.set_ylabel(alignment_label, color=ALIGNMENT_COLOR)
    ax_align.tick_params(axis="y", labelcolor=ALIGNMENT_COLOR)
    if teacher_fid is not None:
        ax_fid.axhline(
            teacher_fid, color=FID_COLOR, linestyle="--", linewidth=1, label=f"{teacher_label} FID"
        )
    if teacher_alignment is not None:
        ax_align.axhline(
            teacher_alignment,
            color=ALIGNMENT_COLOR,
            linestyle="--",
            linewidth=1,
            label=f"{teacher_label} alignment",
        )
    handles = ax_fid.get_legend_handles_labels()[0] + ax_align.get_legend_handles_labels()[0]
    ax_fid.legend(handles=handles, loc="center right", fontsize=8)
    ax_fid.grid(alpha=0.3)
    if title:
        ax_fid.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
