"""PNG plots of a SID build: UniRec Figure 3 (exposure concentration) and per-layer loads."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"capacity": "#2a9d8f", "plain": "#e76f51"}
LABELS = {"capacity": "Capacity-constrained", "plain": "RQ-KMeans"}


def concentration_figure(reports: dict[str, dict], path: Path, title: str = "") -> Path:
    """Grouped bars like UniRec Fig. 3: share of exposure on the top 1/5/10% units per level.

    reports: {"capacity": sid_report(...), "plain": sid_report(...)} (either may be absent).
    """
    methods = [m for m in ("plain", "capacity") if m in reports]
    levels = list(reports[methods[0]]["concentration"])
    tops = list(reports[methods[0]]["concentration"][levels[0]])
    fig, axes = plt.subplots(1, len(tops), figsize=(4.2 * len(tops), 3.6), sharey=True)
    width = 0.8 / len(methods)
    for ax, top in zip(np.atleast_1d(axes), tops, strict=True):
        for j, m in enumerate(methods):
            vals = [100 * reports[m]["concentration"][lv][top] for lv in levels]
            xs = np.arange(len(levels)) + (j - (len(methods) - 1) / 2) * width
            bars = ax.bar(xs, vals, width, color=COLOURS[m], label=LABELS[m])
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(np.arange(len(levels)), levels)
        ax.set_title(f"{top} tokens")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("share of exposures (%)")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "SID exposure concentration (lower = more balanced)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def load_figure(loads: dict[str, np.ndarray], cap: float, tau: float, path: Path) -> Path:
    """Per layer, code loads V_k / C_cap sorted descending, per method, with the tau line.

    loads: {"capacity": (L, K) array, "plain": (L, K) array}.
    """
    n_layers = next(iter(loads.values())).shape[0]
    fig, axes = plt.subplots(1, n_layers, figsize=(4.2 * n_layers, 3.4), sharey=True)
    for level, ax in enumerate(np.atleast_1d(axes)):
        for m, arr in loads.items():
            ax.plot(np.sort(arr[level])[::-1] / cap, color=COLOURS[m], label=LABELS[m])
        ax.axhline(tau, color="k", ls="--", lw=0.8, label=f"tau = {tau:g}")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"layer {level}: load / C_cap")
        ax.set_xlabel("code rank")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
