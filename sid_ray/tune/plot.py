"""The trials of a sweep as one PNG: the final metric against each searched parameter."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"completed": ("o", "tab:blue"), "stopped early": ("x", "tab:orange"), "diverged": ("^", "tab:red")}


def _wide(values: list, decades: float = 2) -> bool:
    """Positive numbers spanning `decades` or more: shown on a log axis."""
    numbers = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 10**decades


def plot_trials(
    trials: list[dict], keys: list[str], metric: str, path: Path, log_keys: set[str], title: str = ""
) -> Path:
    """A scatter per searched key: x its value (categories by position), y the trial's last
    `metric`; markers say whether the trial completed, was stopped early, or diverged."""
    width = max(len(keys), 1)
    fig, axes = plt.subplots(1, width, figsize=(3.8 * width, 3.4), squeeze=False)
    scores = [t["metrics"].get(metric, float("nan")) for t in trials]
    for ax, key in zip(axes[0], keys, strict=False):
        values = [t["config"].get(key) for t in trials]
        categories = sorted({str(v) for v in values}) if any(isinstance(v, str) for v in values) else None
        for status, (marker, color) in MARKERS.items():
            chosen = [(v, s) for v, s, t in zip(values, scores, trials, strict=True) if t["status"] == status]
            if chosen:
                xs = [categories.index(str(v)) if categories else v for v, _ in chosen]
                ax.scatter(xs, [s for _, s in chosen], marker=marker, color=color, label=status, s=40)
        if categories:
            ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize=8)
        elif key in log_keys or _wide(values):
            ax.set_xscale("log")
        if _wide(scores, decades=1):
            ax.set_yscale("log")
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(f"{metric} (last report)")
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
