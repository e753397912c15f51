"""The trials of a sweep as one PNG: the final metric against each searched parameter."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"completed": ("o", "tab:blue"), "stopped early": ("x", "tab:orange"), "diverged": ("^", "tab:red")}


def plot_trials(trials: list[dict], keys: list[str], metric: str, path: Path, log_keys: set[str]) -> Path:
    """A scatter per searched key: x its value (categories by position), y the trial's last
    `metric`; markers say whether the trial completed, was stopped early, or diverged."""
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.6 * max(len(keys), 1), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        values = [t["config"].get(key) for t in trials]
        categories = sorted({str(v) for v in values}) if any(isinstance(v, str) for v in values) else None
        for status, (marker, color) in MARKERS.items():
            chosen = [(v, t) for v, t in zip(values, trials, strict=True) if t["status"] == status]
            xs = [categories.index(str(v)) if categories else v for v, _ in chosen]
            ys = [t["metrics"].get(metric, float("nan")) for _, t in chosen]
            ax.scatter(xs, ys, marker=marker, color=color, label=status)
        if categories:
            ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize=8)
        elif key in log_keys:
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
