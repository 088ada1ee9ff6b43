"""benchmarks/amazon.py end to end on a small review log: a lever measured on validation only
decodes the validation split and never test, runs of different settings keep their own folders,
and `--reuse` scores the chosen lever's test with the weights validation chose, untrained again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("amazon_bench", ROOT / "benchmarks" / "amazon.py")
amazon = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(amazon)


def _review_log(folder: Path, users: int = 40, items: int = 24) -> Path:
    """A canonical parquet source: every user reviews 6 items, a day apart."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(users):
        for k, item in enumerate(rng.choice(items, 6, replace=False)):
            rows.append(
                {
                    "event_id": f"e{u}-{k}",
                    "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=k, hours=u),
                    "user_id": f"u{u}",
                    "item_id": f"i{item}",
                    "request_id": None,
                    "scene": "feed",
                    "event_type": "purchase",
                    "position": None,
                    "price": 1.0,
                }
            )
    (folder / "events").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "events" / "part-0.parquet", index=False)
    kinds = ["lipstick", "shampoo", "soap", "cream"]
    pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(items)],
            "title": [f"{kinds[i % 4]} number {i}" for i in range(items)],
            "cat_l1": ["Beauty"] * items,
            "cat_l2": [kinds[i % 4] for i in range(items)],
            "cat_l3": [f"{kinds[i % 4]}-{i % 3}" for i in range(items)],
            "brand": [f"b{i % 5}" for i in range(items)],
            "seller": ["s"] * items,
            "price": [1.0 + i for i in range(items)],
            "first_seen": ["2025-01-01"] * items,
        }
    ).to_parquet(folder / "items.parquet", index=False)
    pd.DataFrame({"user_id": [f"u{u}" for u in range(users)]}).to_parquet(folder / "users.parquet")
    return folder


def test_validation_only_lever_decodes_validation_never_test(workdir, tmp_path, capsys):
    src = _review_log(tmp_path / "src")
    events = pd.read_parquet(src / "events").sort_values("ts")
    second_to_last = events.groupby("user_id")["item_id"].apply(lambda s: s.iloc[-2]).to_dict()
    out = tmp_path / "out"
    base = ["--source", "parquet", "--data", str(src), "--methods", "unirec", "--seeds", "0"]
    base += ["--threads", "1", "--out", str(out), "--validation-only"]
    small = ["--set", "sid.K=4", "--set", "retriever.train.eval_every=4"]
    for steps in (8, 12):
        assert amazon.main([*base, *small, "--set", f"retriever.train.max_steps={steps}"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["split"] == "valid" and "published" not in summary["table"]
        row = json.loads((out / "unirec-seed0-valid.json").read_text())
        assert row["steps"] == steps and "test" not in row and row["valid"]["recall@10"] >= 0
        run = Path(row["run"])
        assert json.loads((run / "metrics.json").read_text())["split"] == "valid"
        decoded = [json.loads(x) for x in (run / "eval_topk.jsonl").read_text().splitlines()]
        # every user's validation item (the second-to-last), never the test item (the last)
        assert {d["user"]: d["target"] for d in decoded} == second_to_last
        assert (out / "unirec-valid_top200.jsonl").exists()
        assert not (out / "unirec_top200.jsonl").exists()
    runs = sorted(p.name for p in run.parent.glob("unirec-seed0-*"))
    assert len(runs) == 2  # the two budgets trained into folders of their own

    # the chosen lever's test, scored once with the same weights: no second training
    trained = (run / "train.json").read_text()
    weights = (run / "model.safetensors").stat().st_mtime_ns
    test = [a for a in base if a != "--validation-only"] + ["--reuse"]
    assert amazon.main([*test, *small, "--set", "retriever.train.max_steps=12"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"
    assert (run / "train.json").read_text() == trained
    assert (run / "model.safetensors").stat().st_mtime_ns == weights
    row = json.loads((out / "unirec-seed0.json").read_text())
    assert Path(row["run"]) == run and row["test"]["recall@10"] >= 0
    decoded = [json.loads(x) for x in (run / "eval_topk.jsonl").read_text().splitlines()]
    last = events.groupby("user_id")["item_id"].apply(lambda s: s.iloc[-1]).to_dict()
    assert {d["user"]: d["target"] for d in decoded} == last
    assert json.loads((run / "metrics.json").read_text())["split"] == "test"
    assert (out / "unirec_top200.jsonl").exists()
