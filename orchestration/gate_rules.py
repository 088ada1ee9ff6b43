"""Promotion gates: pure comparisons of a candidate's numbers with `params.yaml`'s thresholds.

Each gate is one number against one threshold, so a failed gate says exactly which number
missed (DESIGN.md, Gates). The Dagster asset checks in `orchestration/assets/gates.py` call
these functions and write the day's results to `reports/gates/day=<d>.json`, which promotion
and the simulation report read.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sidflow.atomic import write_text_atomic
from sidflow.config import RankerGateParams, RetrieverGateParams, SidGateParams


@dataclass(frozen=True)
class Gate:
    """One number compared with one threshold."""

    name: str
    value: float | None
    threshold: float
    op: str  # ">=" or "<="
    passed: bool

    @property
    def message(self) -> str:
        """`name = value (needs op threshold)`, prefixed by the verdict."""
        shown = "missing" if self.value is None else f"{self.value:.4f}"
        verdict = "ok" if self.passed else "MISSED"
        return f"{verdict}: {self.name} = {shown} (needs {self.op} {self.threshold:.4f})"


def _gate(name: str, value: float | None, threshold: float, op: str) -> Gate:
    """A gate; a missing value never passes."""
    if value is None:
        return Gate(name, None, threshold, op, False)
    ok = value >= threshold if op == ">=" else value <= threshold
    return Gate(name, float(value), float(threshold), op, bool(ok))


def sid_gates(metrics: dict, gp: SidGateParams) -> list[Gate]:
    """Collision rate, per-layer utilisation and top-1% exposure share of a SID table."""
    table = metrics[metrics["table_method"]]
    gates = [
        _gate("collision_rate", metrics["collision_rate_before_dedup"], gp.max_collision_rate, "<=")
    ]
    for level, layer in enumerate(table["layers"]):
        gates.append(_gate(f"utilisation_s{level}", layer["utilisation"], gp.min_utilisation, ">="))
    for prefix, shares in table["concentration"].items():
        gates.append(_gate(f"top1_share_{prefix}", shares["top1%"], gp.max_top1_share, "<="))
    return gates


def retriever_gates(
    metrics: dict, gp: RetrieverGateParams, promoted: dict | None = None
) -> list[Gate]:
    """HR@K over the floors (all and purchase samples), and within `tolerance` of `promoted`.

    `promoted` holds the promoted model's metrics as recorded when it was promoted (None: no
    promoted model yet, so only the floors apply).
    """
    gates = []
    for suffix, floors in (("", gp.hr_floor), ("_purchase", gp.purchase_hr_floor)):
        for k, floor in sorted(floors.items()):
            key = f"hr@{k}{suffix}"
            value = metrics.get(key)
            gates.append(_gate(key, value, floor, ">="))
            if promoted and promoted.get(key) is not None:
                bar = float(promoted[key]) - gp.tolerance
                gates.append(_gate(f"{key}_vs_promoted", value, bar, ">="))
    return gates


def ranker_gates(metrics: dict, gp: RankerGateParams) -> list[Gate]:
    """Rank AUC over the floor; rank-path minus retrieval-path AUC under the max gap."""
    return [
        _gate("rank_auc", metrics.get("rank_auc"), gp.min_auc, ">="),
        _gate("auc_gap", metrics.get("auc_gap"), gp.max_auc_gap, "<="),
    ]


def gates_path(reports: Path, day: dt.date) -> Path:
    """Where a day's gate results are kept."""
    return reports / "gates" / f"day={day.isoformat()}.json"


def record(reports: Path, day: dt.date, stage: str, gates: list[Gate]) -> Path:
    """Merge `stage`'s gate results into the day's file (atomic replace; re-runs overwrite)."""
    path = gates_path(reports, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current[stage] = [asdict(g) | {"message": g.message} for g in gates]
    return write_text_atomic(json.dumps(current, indent=2), path)


def read_day(reports: Path, day: dt.date) -> dict[str, list[dict]]:
    """The gate results recorded for `day`, by stage ({} when none ran)."""
    path = gates_path(reports, day)
    return json.loads(path.read_text()) if path.exists() else {}


def failures(results: dict[str, list[dict]]) -> list[str]:
    """Messages of every missed gate, `stage: message`."""
    return [
        f"{stage}: {g['message']}" for stage, gs in results.items() for g in gs if not g["passed"]
    ]
