"""The closed-loop simulation report: per served day and arm, what users did, and the lifts.

Rows come from what was shown (one row per shown slot, with its arm: the serving buckets and
the status quo) and the world's responses to it. Lifts and their intervals are computed over
users (`serving/abstats.py`): every arm against control, and the model arms against the
status quo. Written as `simulation.json`, `simulation.md`, `simulation.png` (per-arm levels)
and `lifts.png` (each lift with its interval per day) under `reports/simulation/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from serving.abstats import (  # noqa: E402
    LABELS,
    METRICS,
    arm_summary,
    compare,
    srm_check,
    user_table,
)

STATUS_QUO = "status_quo"


def bucket_metrics(shown: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Per arm (`bucket`): model, users, requests, exposures, clicks, CTR, purchases, GMV,
    purchases and GMV per request, the share of fallback lists.

    `shown`: request_id, user_id, item_id, bucket, model (one row per shown slot);
    `responses`: canonical click/cart/purchase events with request_id and item_id.
    """
    out = arm_summary(user_table(shown, responses)).rename(columns={"arm": "bucket"})
    models = shown.groupby("bucket")["model"].first()
    out.insert(1, "model", out["bucket"].map(models))
    if "fallback" in shown:
        out["fallback_share"] = out["bucket"].map(shown.groupby("bucket")["fallback"].mean())
    return out


def comparisons(
    arms: list[str], control: str = "control", status_quo: str = STATUS_QUO
) -> list[tuple[str, str]]:
    """(arm, reference) pairs: every model arm against control, then every model arm
    (control included) against the status quo."""
    models = [a for a in arms if a != status_quo]
    pairs = [(a, control) for a in models if a != control] if control in arms else []
    if status_quo in arms:
        pairs += [(a, status_quo) for a in models]
    return pairs


def ab_analysis(
    shown: pd.DataFrame,
    responses: pd.DataFrame,
    shares: dict[str, float],
    ab,  # noqa: ANN001 - sidflow.config.AbTestParams
) -> dict:
    """The day's lifts (every metric, every pair of `comparisons`) and the SRM check."""
    users = user_table(shown, responses)
    arms = sorted(users["arm"].unique())
    lifts = [
        compare(users, a, ref, m, ab.confidence, ab.interval, ab.bootstrap_samples, ab.seed)
        for a, ref in comparisons(arms)
        for m in METRICS
    ]
    observed = users.groupby("arm").size().to_dict()
    srm = srm_check({a: int(n) for a, n in observed.items()}, shares, ab.srm_alpha)
    return {"lifts": [c.to_json() for c in lifts], "srm": srm.to_json()}


def write_report(days: list[dict], folder: Path) -> dict[str, Path]:
    """`days`: one dict per served day (day, buckets [rows of bucket_metrics], gates, promoted,
    hr). Writes JSON, Markdown and PNG plots; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "simulation.json", "md": folder / "simulation.md"}
    paths["json"].write_text(json.dumps(days, indent=2, default=str))
    paths["md"].write_text(markdown(days))
    table = pd.DataFrame([{"day": d["day"], **b} for d in days for b in d["buckets"]])
    if not table.empty:
        paths["plot"] = folder / "simulation.png"
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, col, title in zip(
            axes,
            ("ctr", "purchases", "gmv_per_request"),
            ("CTR", "purchases", "GMV per request"),
            strict=True,
        ):
            for bucket, b in table.groupby("bucket"):
                ax.plot(b["day"].astype(str), b[col], marker="o", label=bucket)
            ax.set_title(title)
            ax.tick_params(axis="x", rotation=30)
        axes[0].legend(title="bucket")
        fig.suptitle("closed-loop A/B simulation: served days")
        fig.tight_layout()
        fig.savefig(paths["plot"], dpi=110)
        plt.close(fig)
    lifts = pd.DataFrame([{"day": d["day"], **c} for d in days for c in d.get("lifts", [])])
    if not lifts.empty:
        paths["lifts"] = folder / "lifts.png"
        plot_lifts(lifts, paths["lifts"])
    return paths


def plot_lifts(lifts: pd.DataFrame, path: Path) -> None:
    """One panel per metric: each comparison's relative lift per day with its interval."""
    day_names = sorted(lifts["day"].unique())
    x_of = {d: i for i, d in enumerate(day_names)}
    pairs = list(dict.fromkeys(zip(lifts["arm"], lifts["reference"], strict=True)))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.6 * len(METRICS), 3.8), sharex=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        m = lifts[lifts["metric"] == metric]
        for j, (arm, ref) in enumerate(pairs):
            r = m[(m["arm"] == arm) & (m["reference"] == ref)]
            x = r["day"].map(x_of).to_numpy() + (j - (len(pairs) - 1) / 2) * 0.12
            y = 100 * r["lift"].to_numpy()
            err = 100 * np.abs(r[["lift_low", "lift_high"]].to_numpy().T - r["lift"].to_numpy())
            err = np.where(np.isfinite(err), err, np.nan)  # an unbounded interval: no bar
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=f"{arm} vs {ref}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{LABELS[metric]} lift, % (95% CI over users)")
        ax.set_xticks(range(len(day_names)), day_names, rotation=30)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(pairs), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(days: list[dict]) -> str:
    """The per-day, per-bucket table plus gates and promotions."""
    lines = [
        "| day | arm | model | users | requests | exposures | CTR | purchases | GMV | GMV/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in days:
        for b in d["buckets"]:
            lines.append(
                f"| {d['day']} | {b['bucket']} | {b.get('model', '')} | {b.get('users', 0):,} | "
                f"{b['requests']:,} | {b['exposures']:,} | {b['ctr']:.4f} | {b['purchases']:,} | "
                f"{b['gmv']:,.0f} | {b['gmv_per_request']:.2f} |"
            )
    lines += ["", *lift_table(days)]
    lines += [
        "",
        "| day | retrain | HR@50 | HR@200 | gates | promoted / candidate |",
        "|---|---|---|---|---|---|",
    ]
    for d in days:
        hr = d.get("hr") or {}
        gates = "passed" if not d.get("missed") else "MISSED: " + "; ".join(d["missed"])
        lines.append(
            f"| {d['day']} | {d.get('run', '')} | {_num(hr.get('hr@50'))} | "
            f"{_num(hr.get('hr@200'))} | {gates} | {d.get('registry', '')} |"
        )
    lines += [
        "",
        "| day | SRM (users per arm vs configured split) | A/B decision |",
        "|---|---|---|",
    ]
    for d in days:
        lines.append(f"| {d['day']} | {srm_text(d.get('srm'))} | {decision_text(d)} |")
    return "\n".join(lines) + "\n"


def lift_table(days: list[dict]) -> list[str]:
    """Markdown rows: every lift with its interval (relative, and the absolute difference)."""
    lines = [
        "| day | metric | arm vs reference | arm | reference | lift [95% CI] | "
        "difference [95% CI] | users |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in days:
        for c in d.get("lifts", []):
            mark = " *" if c["significant"] else ""
            lines.append(
                f"| {d['day']} | {LABELS[c['metric']]} | {c['arm']} vs {c['reference']} | "
                f"{c['value']:.4f} | {c['reference_value']:.4f} | "
                f"{c['lift']:+.1%} [{c['lift_low']:+.1%}, {c['lift_high']:+.1%}]{mark} | "
                f"{c['diff']:+.4f} [{c['diff_low']:+.4f}, {c['diff_high']:+.4f}] | "
                f"{c['users']:,} vs {c['reference_users']:,} |"
            )
    lines.append("")
    lines.append("`*`: the interval excludes 0. Intervals over users (serving/abstats.py).")
    return lines


def srm_text(srm: dict | None) -> str:
    """One cell: observed vs expected users, p-value, verdict."""
    if not srm:
        return "n/a"
    parts = ", ".join(
        f"{a} {srm['observed'][a]:,}/{srm['expected'][a]:,.0f}" for a in srm["expected"]
    )
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    return f"{parts}; chi2 {srm['chi2']:.2f}, p={srm['p_value']:.3g}: {verdict}"


def decision_text(day: dict) -> str:
    """One cell: what the promotion asset decided on the day's A/B test."""
    d = day.get("decision")
    if not d:
        return "no A/B decision (nothing under test)"
    return ("PROMOTED: " if d["promote"] else "kept control: ") + d["reason"]


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
