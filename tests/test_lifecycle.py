"""The whole gated graph on two tiny days: a planted bad batch is quarantined and the day goes
on; a candidate that misses a gate is not promoted and the promoted model keeps serving."""

import pandas as pd
from quick_graph import QUICK_TINY

from data_contracts.quarantine import Quarantine
from ingestion.warehouse import Warehouse
from orchestration import gate_rules as gates
from orchestration.runner import run_days
from serving.recommender import Request
from serving.router import ServingApp
from sidflow.config import load_params
from sidflow.registry import Registry


def test_whole_graph_two_days_bad_batch_and_failed_gate(tiny_params, tiny_world, workdir):
    d0, d1 = tiny_world.days[1:3]
    run_days(tiny_params, tiny_world.days[:1], train_days=[])  # history for day d0's model

    # Day d0: a partner batch with three bad rows among 60 good ones (4.8%, under the limit: a
    # batch with a larger share is quarantined whole).
    good = tiny_world.events(d0).head(60).assign(event_id=lambda f: "partner-" + f["event_id"])
    bad = good.head(3).copy()
    bad["event_id"] = ["bad-unknown-item", "bad-negative-price", "bad-event-type"]
    bad.loc[bad.index[0], "item_id"] = "no-such-item"
    bad.loc[bad.index[1], "price"] = -5.0
    bad.loc[bad.index[2], "event_type"] = "teleport"
    pd.concat([good, bad]).to_parquet(workdir.raw_dir("events", d0) / "partner.parquet")
    # One day of history is little: the tiny world's first SID table has ~10% collisions before
    # dedup and its first retriever barely trains (HR@50 ~ 0), so day d0's floors are lowered.
    loose = QUICK_TINY
    [run0] = run_days(load_params(overrides=loose), [d0], loose)
    assert run0.success, run0
    quarantined = Quarantine(workdir.root / "quarantine").read_rows("events", d0)
    assert set(quarantined["event_id"]) == set(bad["event_id"])
    stored = Warehouse(workdir.warehouse).query("SELECT event_id FROM events WHERE day = ?", [d0])
    assert not set(bad["event_id"]) & set(stored["event_id"])
    assert set(good["event_id"]) <= set(stored["event_id"])  # no good row lost
    registry = Registry(workdir.registry)
    promoted = registry.current()["promoted"]
    assert promoted and promoted["day"] == d0.isoformat()
    assert not gates.failures(gates.read_day(workdir.reports, d0))

    # Day d1: the candidate cannot reach an HR@50 floor of 1.01, so the gate stops the run.
    strict = {**loose, "gates.retriever.hr_floor": {50: 1.01}}
    [run1] = run_days(load_params(overrides=strict), [d1], strict)
    assert not run1.success
    assert "retriever_eval:retriever_gate" in run1.failed_checks
    missed = gates.failures(gates.read_day(workdir.reports, d1))
    assert missed and missed[0].startswith("retriever: MISSED: hr@50 = ")
    assert "needs >= 1.0100" in missed[0]
    state = registry.current()
    assert state["promoted"]["tag"] == promoted["tag"] and state["candidate"] is None
    assert not (workdir.reports / "bundles" / f"day={d1}.json").exists()

    # The old model keeps serving every bucket.
    served = ServingApp(tiny_params, log=False).handle([Request("u0000001", "feed", 5)] * 3)
    assert {s.model for s in served} == {promoted["tag"]}
