"""SID quality metrics: codebook use, load vs capacity, reconstruction, exposure concentration.

Exposure concentration follows UniRec §3.2 (Figures 2-3): at sid0, tokens are ranked by
exposure; at sid0-1 and sid0-1-2 the joint combinations (s0, s1) and (s0, s1, s2) are
the units. The share of all exposures held by the top p% of units (p = 1, 5, 10) is
reported; units are the combinations that occur (a catalogue of N items has at most N),
and the top p% is max(1, round(p * units)) of them, as in ingestion/world_stats.py.
"""

from __future__ import annotations

import numpy as np

from models.tokenizer.dedup import collision_rate

TOPS = (0.01, 0.05, 0.10)


def level_name(level: int) -> str:
    """'sid0', 'sid0-1', 'sid0-1-2', ... for the first level + 1 layers."""
    return "sid" + "-".join(str(i) for i in range(level + 1))


def concentration(
    codes: np.ndarray, exposure: np.ndarray, tops: tuple[float, ...] = TOPS
) -> dict[str, dict[str, float]]:
    """{level: {'top1%': share, ...}} exposure share of the top units at every prefix level."""
    total = float(exposure.sum())
    out = {}
    for level in range(codes.shape[1]):
        _, inverse = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
        volume = np.sort(np.bincount(inverse.reshape(-1), weights=exposure))[::-1]
        out[level_name(level)] = {
            f"top{round(p * 100)}%": round(
                float(volume[: max(1, round(p * len(volume)))].sum()) / total, 4
            )
            if total
            else 0.0
            for p in tops
        }
    return out


def layer_stats(codes: np.ndarray, weights: np.ndarray, k: int, tau: float) -> list[dict]:
    """Per layer: utilisation (codes used / K), max load / C_cap, codes over tau * C_cap."""
    cap = float(weights.sum()) / k
    stats = []
    for level in range(codes.shape[1]):
        load = np.bincount(codes[:, level], weights=weights, minlength=k)
        stats.append(
            {
                "utilisation": round(float((load > 0).mean()), 4),
                "max_load_ratio": round(float(load.max() / cap), 4),
                "codes_over_capacity": int((load > tau * cap * (1 + 1e-12)).sum()),
                "load_cv": round(float(load.std() / load.mean()), 4),
            }
        )
    return stats


def reconstruction_error(x: np.ndarray, codes: np.ndarray, codebooks: np.ndarray) -> list[float]:
    """Relative squared error mean ||x - x_hat_l||^2 / mean ||x||^2 after each layer l."""
    x = x.astype(np.float64)
    approx = np.zeros_like(x)
    base = float((x**2).sum(1).mean())
    errors = []
    for level in range(codes.shape[1]):
        approx += codebooks[level][codes[:, level]]
        errors.append(round(float(((x - approx) ** 2).sum(1).mean()) / base, 4))
    return errors


def sid_report(
    x: np.ndarray,
    codes: np.ndarray,
    codebooks: np.ndarray,
    weights: np.ndarray,
    exposure: np.ndarray,
    k: int,
    tau: float,
) -> dict:
    """All metrics of one SID assignment (codes (N, L) for embeddings x (N, D))."""

    cap = float(weights.sum()) / k
    return {
        "layers": layer_stats(codes, weights, k, tau),
        "collision_rate": round(collision_rate(codes), 4),
        "reconstruction_error": reconstruction_error(x, codes, codebooks),
        "concentration": concentration(codes, exposure),
        "infeasible_items": int((weights > tau * cap).sum()),
    }


def concentration_table(metrics: dict) -> str:
    """Markdown table: exposure share of the top 1/5/10% units per level, per method."""
    methods = [m for m in ("capacity", "plain") if m in metrics]
    levels = [level_name(i) for i in range(metrics["L"])]
    head = "| level | " + " | ".join(f"{m} top{round(p * 100)}%" for m in methods for p in TOPS)
    lines = [head + " |", "|---" * (1 + len(methods) * len(TOPS)) + "|"]
    for lv in levels:
        cells = [
            f"{100 * metrics[m]['concentration'][lv][f'top{round(p * 100)}%']:.1f}%"
            for m in methods
            for p in TOPS
        ]
        lines.append(f"| {lv} | " + " | ".join(cells) + " |")
    if "item_concentration" in metrics:  # each item its own unit: where deep levels tend
        tops = [
            f"{100 * metrics['item_concentration'][f'top{round(p * 100)}%']:.1f}%" for p in TOPS
        ]
        lines.append("| items (1 per unit) | " + " | ".join(tops * len(methods)) + " |")
    return "\n".join(lines)
