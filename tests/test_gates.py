"""Promotion gates: each number against its threshold, and a miss names the number."""

import datetime as dt

from orchestration import gate_rules as g
from sidflow.config import RankerGateParams, RetrieverGateParams, SidGateParams

SID_METRICS = {
    "table_method": "capacity",
    "collision_rate_before_dedup": 0.02,
    "capacity": {
        "layers": [{"utilisation": 0.9}, {"utilisation": 0.8}, {"utilisation": 0.2}],
        "concentration": {"sid0": {"top1%": 0.1}, "sid0-1": {"top1%": 0.7}},
    },
}


def test_sid_gates_name_what_missed():
    gates = g.sid_gates(SID_METRICS, SidGateParams())
    missed = {x.name for x in gates if not x.passed}
    assert missed == {"utilisation_s2", "top1_share_sid0-1"}
    msg = next(x.message for x in gates if x.name == "utilisation_s2")
    assert msg == "MISSED: utilisation_s2 = 0.2000 (needs >= 0.3000)"


def test_retriever_floors_and_regression_vs_promoted():
    gp = RetrieverGateParams(hr_floor={50: 0.1}, purchase_hr_floor={50: 0.05}, tolerance=0.02)
    metrics = {"hr@50": 0.30, "hr@50_purchase": 0.04}
    assert [x.name for x in g.retriever_gates(metrics, gp) if not x.passed] == ["hr@50_purchase"]
    promoted = {"hr@50": 0.33, "hr@50_purchase": 0.01}
    gates = g.retriever_gates(metrics, gp, promoted)
    missed = [x.name for x in gates if not x.passed]
    assert missed == ["hr@50_vs_promoted", "hr@50_purchase"]  # 0.30 < 0.33 - 0.02
    assert g.retriever_gates({**metrics, "hr@50": 0.31}, gp, promoted)[1].passed


def test_missing_numbers_never_pass():
    gates = g.ranker_gates({"rank_auc": 0.7}, RankerGateParams())
    assert [x.passed for x in gates] == [True, False]
    assert "auc_gap = missing" in gates[1].message


def test_record_merges_stages_and_rerun_overwrites(tmp_path):
    day = dt.date(2026, 1, 2)
    g.record(tmp_path, day, "sid", g.sid_gates(SID_METRICS, SidGateParams()))
    g.record(
        tmp_path,
        day,
        "ranker",
        g.ranker_gates({"rank_auc": 0.5, "auc_gap": 0.0}, RankerGateParams()),
    )
    g.record(
        tmp_path,
        day,
        "ranker",
        g.ranker_gates({"rank_auc": 0.7, "auc_gap": 0.01}, RankerGateParams()),
    )
    results = g.read_day(tmp_path, day)
    assert set(results) == {"sid", "ranker"}
    assert g.failures(results) == [
        "sid: MISSED: utilisation_s2 = 0.2000 (needs >= 0.3000)",
        "sid: MISSED: top1_share_sid0-1 = 0.7000 (needs <= 0.6000)",
    ]
    assert not list(tmp_path.rglob("*.tmp"))
