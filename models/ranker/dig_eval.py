"""Fixed against learned SIDs in the DIG ranker, as ranker and as retriever (dig §3.2-3.4).

On a working folder where the data stages ran through day D (`sidflow run --data-only`) and
the SID table of D exists (`sidflow sid build --as-of D`), for every `ranker.sid` mode and
seed: train the day's ranker cold on the days before D (`models.ranker.stage.train_run`,
one sample table for all runs), then on day D

- rank AUC, retrieval AUC per layer and the gap rank - recall(L) over the held-out
  exposures (`evaluate_run`, DIG Table 4);
- the ranker as retriever (`models.ranker.retrieval`, §3.4): beam search over its SIDs
  (the learned codes when learned) for the held-out engagements the retriever evaluation
  uses (models/retriever/stage.py `prepare`: the protocol's test samples, at most
  `retriever.eval.max_samples`, the same random pick), Recall@10, NDCG@10 and HR@50;
- the collision rate of the codes (items sharing a full code) before and after training.

Prints JSON: per run, then per mode the mean and sample sd over seeds.

    python -m models.ranker.dig_eval [--day D] [--seeds 0 1] [--modes fixed learned]
        [--beam 50] [--out DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.schema import TIMESTAMP
from features.store import training_frame
from ingestion.warehouse import Warehouse
from models.metrics import retrieval_report, target_ranks
from models.ranker.checkpoint import load_ranker
from models.ranker.data import RankerEncoding
from models.ranker.retrieval import CodeIndex, ranker_beam_search
from models.ranker.samples import build_ranker_samples
from models.ranker.stage import SAMPLES, evaluate_run, train_run, warehouse_events
from models.retriever.protocol import resolve_protocol, split_samples
from models.retriever.samples import Samples, build_samples, engaged
from models.space import FeatureSpace
from models.tokenizer.table import load_sid_table
from sidflow.config import Params, load_params
from sidflow.stats import sample_sd
from sidflow.workdir import Workdir

BEAM_BATCH = 16  # requests per beam-search call


def held_engagements(
    params: Params, warehouse: Warehouse, space: FeatureSpace, day: dt.date, history_len: int
) -> tuple[Samples, pd.Series]:
    """The retriever evaluation's held-out engagements of `day` (same protocol, cap and pick
    as models/retriever/stage.py `prepare`) with `history_len` earlier engagements each,
    and their timestamps."""
    events = warehouse.query(
        "SELECT user_id, item_id, ts, scene, event_type, request_id, event_id FROM events "
        "WHERE day <= ? AND event_type IN ('click', 'cart', 'purchase')",
        [day],
    )
    samples = build_samples(events, space, history_len)  # min_history 0: one per engagement
    samples.profile["ts"] = engaged(events)["ts"].to_numpy()  # aligned, carried by subset
    protocol = resolve_protocol(params.retriever.eval.protocol, warehouse, day)
    held = split_samples(samples, day, protocol).test
    cap = params.retriever.eval.max_samples
    if cap and len(held) > cap:
        held = held.subset(np.sort(np.random.default_rng(0).choice(len(held), cap, False)))
    return held, pd.Series(held.profile.pop("ts"))


def request_tensors(
    params: Params, enc: RankerEncoding, held: Samples, ts: pd.Series, users: pd.DataFrame
) -> dict[str, torch.Tensor]:
    """The ranker's user side of each held-out engagement: profile, scene, user features as
    of its timestamp (the feature store, point in time, as the sample table), history."""
    entity = pd.DataFrame(
        {"user_id": held.user_id, "item_id": held.item_id, TIMESTAMP: pd.to_datetime(ts, utc=True)}
    )
    feats = training_frame(params, entity, "ranker").reset_index(drop=True)
    profiles = users.drop_duplicates("user_id").set_index("user_id")
    return {
        "profile": torch.from_numpy(enc.profile(held.user_id, profiles)),
        "scene": torch.from_numpy(enc.scene_ids(held.scene)),
        "user_dense": torch.from_numpy(enc.dense(feats, enc.user_cols)),
        "hist": torch.from_numpy(held.hist),
    }


def beam_report(
    run: Path, data: dict[str, torch.Tensor], held: Samples, beam: int
) -> tuple[dict, float]:
    """Recall@10, NDCG@10, HR@50 (all and purchase) of the run's ranker as retriever, and the
    CPU seconds of the beam search."""
    model, enc, _ = load_ranker(run)
    index = CodeIndex.build(model.item_sids, model.cfg.codebook_size)
    ranked = np.full((len(held), beam), -1, np.int64)
    t0 = time.process_time()
    for s in range(0, len(held), BEAM_BATCH):
        batch = {k: v[s : s + BEAM_BATCH] for k, v in data.items()}
        items, _ = ranker_beam_search(model, batch, index, beam, top_n=beam)
        ranked[s : s + len(items)] = items.numpy()
    cpu = time.process_time() - t0
    targets = enc.ids("item_id", held.item_id)
    ranks = target_ranks(ranked, np.where(targets > 0, targets, -1))
    report = retrieval_report(ranks, [50], [10], held.event_type == "purchase")
    report["targets_without_code"] = int((model.item_sids[targets] == 0).any(1).sum())
    return report, cpu


def code_moves(run: Path, table: torch.Tensor) -> dict:
    """Per SID layer, the share of the table's items whose code the run's ranker changed,
    and the first-layer codes in use (table (N+1, L) codes + 1 of the SID table)."""
    model, _, _ = load_ranker(run)
    has = (table > 0).all(1)
    has[0] = False
    new = model.item_sids
    out = {
        f"moved_l{i + 1}": round(float((new[has, i] != table[has, i]).float().mean()), 4)
        for i in range(table.shape[1])
    }
    return out | {"codes_in_use_l1": int(len(torch.unique(new[1:, 0])))}


def summarise(runs: list[dict], keys: list[str]) -> dict:
    """Mean and sample sd over the runs of each key."""
    out = {}
    for k in keys:
        x = np.array([r[k] for r in runs], float)
        out[k] = {
            "mean": round(float(x.mean()), 4),
            "sd": None if (sd := sample_sd(x)) is None else round(sd, 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Train and measure every (mode, seed); print JSON."""
    import sidflow  # noqa: F401  (telemetry settings)

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--day", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--modes", nargs="+", default=["fixed", "learned"])
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="key=value settings")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    params = load_params(overrides=dict(s.split("=", 1) for s in args.set))
    wd = Workdir.of(params)
    warehouse = Warehouse(wd.warehouse)
    day = args.day or warehouse.query("SELECT max(day) AS d FROM events")["d"].iloc[0]
    day = pd.Timestamp(day).date()
    out = args.out or Path(params.workdir) / "reports" / "dig_eval" / f"day={day}"
    out.mkdir(parents=True, exist_ok=True)
    events, items, users = warehouse_events(warehouse, day, params.ranker.train_days)
    sid = load_sid_table(wd.sid_dir / f"day={day.isoformat()}")
    samples_path = out / SAMPLES
    if not samples_path.exists():
        build_ranker_samples(params, events, items, day).to_parquet(samples_path, index=False)
    samples = pd.read_parquet(samples_path)
    space = FeatureSpace.build(items, users, params.data.scenes)
    held, ts = held_engagements(params, warehouse, space, day, params.ranker.history_len)
    data = None
    runs = []
    for mode in args.modes:
        for seed in args.seeds:
            rp = params.ranker.model_copy(update={"sid": mode, "seed": seed})
            folder = out / f"{mode}_seed{seed}"
            t0 = time.process_time()
            trained = train_run(
                params, events, items, users, sid.frame, sid.K, day, folder, rp, samples, False
            )
            train_cpu = time.process_time() - t0
            metrics = evaluate_run(folder, users).metrics
            if data is None:
                _, enc, _ = load_ranker(folder)
                if enc.vocab["item_id"] != space.vocab["item_id"]:
                    raise ValueError("the ranker's item vocabulary differs from the samples'")
                data = request_tensors(params, enc, held, ts, users)
            beam, beam_cpu = beam_report(folder, data, held, args.beam)
            runs.append(
                {
                    "mode": mode,
                    "seed": seed,
                    **{k: v for k, v in metrics.items() if k.startswith(("rank_", "recall_"))},
                    "auc_gap": metrics["auc_gap"],
                    "eval_rows": metrics["eval_rows"],
                    **{f"beam_{k}": v for k, v in beam.items()},
                    "collision_start": trained.collision_start,
                    "collision_final": trained.collision_final,
                    "moved_from_table": trained.moved_from_table,
                    **code_moves(folder, space.item_sids(sid.frame)),
                    "steps": trained.steps,
                    "train_rows": trained.samples["train_rows"],
                    "train_cpu_s": round(train_cpu, 1),
                    "beam_cpu_s": round(beam_cpu, 1),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "seed"]
    summary = {m: summarise([r for r in runs if r["mode"] == m], keys) for m in args.modes}
    report = {
        "day": day.isoformat(),
        "workdir": str(params.workdir),
        "beam": args.beam,
        "held_engagements": len(held),
        "sid": {"K": sid.K, "L": int(sid.frame.filter(regex=r"^s\d+$").shape[1])},
        "runs": runs,
        "summary": summary,
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
    }
    (out / "dig_eval.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
