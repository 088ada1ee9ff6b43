"""The closed-loop simulation report: per served day and A/B bucket, what users did.

Rows come from what the service showed (one row per shown slot, with its bucket) and the
world's responses to it. Written as `simulation.json`, `simulation.md` and PNG plots under
`reports/simulation/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def bucket_metrics(shown: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Per bucket: requests, exposures, clicks, CTR, purchases, GMV, GMV per request.

    `shown`: request_id, bucket, position, item_id (one row per shown slot);
    `responses`: canonical click/cart/purchase events with request_id and position.
    """
    slots = shown[["request_id", "position", "bucket"]]
    resp = responses.merge(slots, on=["request_id", "position"], how="inner")
    rows = []
    for bucket, s in shown.groupby("bucket", sort=True):
        r = resp[resp["bucket"] == bucket]
        buys = r[r["event_type"] == "purchase"]
        n_req = s["request_id"].nunique()
        clicks = int((r["event_type"] == "click").sum())
        rows.append(
            {
                "bucket": bucket,
                "requests": n_req,
                "exposures": len(s),
                "clicks": clicks,
                "ctr": clicks / max(len(s), 1),
                "purchases": len(buys),
                "gmv": float(buys["price"].sum()),
                "gmv_per_request": float(buys["price"].sum()) / max(n_req, 1),
                "fallback_share": float(s["fallback"].mean()) if "fallback" in s else 0.0,
            }
        )
    return pd.DataFrame(rows)


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
    return paths


def markdown(days: list[dict]) -> str:
    """The per-day, per-bucket table plus gates and promotions."""
    lines = [
        "| day | bucket | model | requests | exposures | CTR | purchases | GMV | GMV/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in days:
        for b in d["buckets"]:
            lines.append(
                f"| {d['day']} | {b['bucket']} | {b.get('model', '')} | {b['requests']:,} | "
                f"{b['exposures']:,} | {b['ctr']:.4f} | {b['purchases']:,} | {b['gmv']:,.0f} | "
                f"{b['gmv_per_request']:.2f} |"
            )
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
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
