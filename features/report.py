"""Human-readable views of the feature tables: Markdown summaries, a PNG plot, the feature list."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pandas as pd

from features.compute import FeatureTablesReport
from features.schema import TIMESTAMP, end_of_day, view_specs
from sidflow.config import FeaturesParams


def tables_markdown(report: FeatureTablesReport) -> str:
    """One line per view: rows written, mean null share, the features that are mostly null."""
    lines = ["| view | rows | mean null share | features > 50% null |", "|---|---:|---:|---|"]
    for view, per_day in report.rows.items():
        shares = report.null_share[view]
        mean = sum(shares.values()) / len(shares) if shares else 0.0
        mostly = ", ".join(f for f, s in shares.items() if s > 0.5) or "-"
        lines.append(f"| {view} | {sum(per_day.values()):,} | {mean:.3f} | {mostly} |")
    return "\n".join(lines)


def empty_markdown(report: FeatureTablesReport) -> str:
    """Which features are empty because the source lacks their events (never faked)."""
    if not report.empty_features:
        return "_every feature has data: the source has exposures, clicks, carts and purchases_"
    rows = "\n".join(f"| {f} | {why} |" for f, why in report.empty_features.items())
    return "| empty feature | reason |\n|---|---|\n" + rows


def preview_markdown(frame: pd.DataFrame, n: int = 8, max_cols: int = 10) -> str:
    """The first rows and columns of a feature table as Markdown."""
    if frame.empty:
        return "_no rows_"
    return frame.iloc[:n, :max_cols].to_markdown(index=False, floatfmt=".4g")


def plot_png(report: FeatureTablesReport, item_table: pd.DataFrame, path: Path) -> Path:
    """Rows per view and the distribution of item CTR over the smallest and largest windows."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    views = list(report.rows)
    ax1.barh(views, [sum(report.rows[v].values()) for v in views], color="#4c72b0")
    ax1.set_xlabel("rows written")
    ax1.set_title(f"feature rows, {report.first_day}..{report.last_day}")
    ctr_cols = [c for c in item_table.columns if c.startswith("item_ctr_")]
    shown = [c for c in (ctr_cols[:1] + ctr_cols[-1:]) if item_table[c].notna().any()]
    for c in dict.fromkeys(shown):
        ax2.hist(item_table[c].dropna(), bins=40, alpha=0.6, label=c)
    ax2.set_title("smoothed item CTR" if shown else "no CTR: the source has no exposures")
    if shown:
        ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def png_markdown(path: Path, alt: str) -> str:
    """Markdown that shows a PNG inline (embedded, so the Dagster UI renders it)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def future_rows(frame: pd.DataFrame, day: dt.date) -> dict[str, int]:
    """Counts of rows that break point-in-time correctness for day d's table (expected all 0)."""
    end = pd.Timestamp(end_of_day(day))
    out = {"stamped_after_end_of_day": int((frame[TIMESTAMP] > end).sum())}
    out["stamped_before_end_of_day"] = int((frame[TIMESTAMP] < end).sum())
    for col in [c for c in frame.columns if c.endswith("_ts")]:
        out[f"{col}_not_before_row_time"] = int((frame[col] >= frame[TIMESTAMP]).sum())
    return out


def feature_table_markdown(fp: FeaturesParams) -> str:
    """Every feature with its view, type and definition (README / closing note table)."""
    lines = ["| view | feature | type | definition |", "|---|---|---|---|"]
    for spec in view_specs(fp).values():
        keys = ", ".join(spec.join_keys)
        for f in spec.features:
            lines.append(f"| {spec.name} ({keys}) | `{f.name}` | {f.kind} | {f.definition} |")
    return "\n".join(lines)
