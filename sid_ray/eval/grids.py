"""Sample grids as PNG: one row per sampler, one column per prompt, labelled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def save_sample_grid(
    rows: Mapping[str, torch.Tensor],
    path: str | Path,
    column_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 0.9,
) -> Path:
    """Write a labelled grid: `rows` maps a row label to images (N, 3, H, W) in [0, 1] (N equal).

    Pixels are drawn unsmoothed (nearest), so a 16x16 digit shows its own pixels, not the
    viewer's interpolation.
    """
    if not rows:
        raise ValueError("save_sample_grid needs at least one row")
    counts = {label: images.shape[0] for label, images in rows.items()}
    num_cols = next(iter(counts.values()))
    if any(n != num_cols for n in counts.values()):
        raise ValueError(f"every row needs the same number of images, got {counts}")
    if column_labels is not None and len(column_labels) != num_cols:
        raise ValueError(f"{len(column_labels)} column labels for {num_cols} columns")
    num_rows = len(rows)
    fig, axes = plt.subplots(
        num_rows,
        num_cols,
        figsize=(cell_inches * num_cols + 1.6, cell_inches * num_rows + (0.8 if title else 0.4)),
        squeeze=False,
    )
    for r, (label, images) in enumerate(rows.items()):
        pixels = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        for c in range(num_cols):
            ax = axes[r][c]
            ax.imshow(pixels[c], interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and column_labels is not None:
                ax.set_title(column_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
