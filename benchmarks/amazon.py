"""Leave-one-out benchmark of sidflow's retriever on an own-data source (default: Amazon Beauty
5-core), through the stage functions the Dagster assets call; baselines beside it.

The product's path, the same code as `sid_table` / `retriever_model` / `retriever_eval` on the
source's last day (`retriever.eval.protocol: leave_one_out`):
- the source is read by `ingestion.readers.read_source` (any `data.source`: amazon, parquet,
  csv, recbole) into a DuckDB warehouse of its own, keyed by the data's content;
- SIDs: `models.tokenizer.stage.run_sid_stage` without the held-out engagements
  (`models.retriever.protocol.held_out_event_ids`), capacity-constrained for UniRec, plain
  RQ-KMeans for the TIGER-like variant;
- training and model selection: `models.retriever.stage.train_run` (the best checkpoint
  and the item head's weight on the validation split, never on test); test decoding and
  metrics: `evaluate_run` over every test user.
Baselines on the same split (`split_samples`): popularity, SASRec with BCE or CE, trained
until validation Recall@10 stops improving (the best validation checkpoint is scored).
Methods: popularity, sasrec_ce, sasrec_bce, unirec, the retriever variants of
models/baselines/variants.py (tiger, no_coa, no_task_bos, ...), UNGER's ablation rows
unger_none / unger_cka / unger_cka_ikd (fused SIDs with or without the alignment, IKD), and
unirec_auto (the SID embedding chosen by short validation probes, then the full recipe).
Each seed trains its own model (`--seeds`); SIDs are built once per SID setting and reused.

Prints JSON (test Recall/NDCG@5/10/20, HR@50/100/200 per method, validation selection, times)
and writes each method's test top-200 lists as JSONL, `{"user": <user id>, "items": [...]}`, to
`--out` (default `<workdir>/reports/benchmarks/<dataset>/`) so anyone can score them.

    .venv/bin/python benchmarks/amazon.py [--data PATH] [--methods popularity,unirec,...]
        [--seeds 0 1] [--set retriever.train.max_steps=4000 ...] [--validation-only]

`--validation-only` measures a lever: retriever methods train and select as usual, then decode
every validation user instead of test (`retriever.eval.held_out: valid`); test is never decoded.
`--reuse` then scores the chosen lever's test once with the weights validation chose (the run
folder of the same settings is decoded on test, not trained again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import sidflow  # noqa: E402,F401  (telemetry settings)
from ingestion.readers import SourceTables, read_source  # noqa: E402
from ingestion.warehouse import Warehouse  # noqa: E402
from models.baselines.popularity import popularity_ranking  # noqa: E402
from models.baselines.sasrec import SASRec, sequences  # noqa: E402
from models.baselines.variants import variant  # noqa: E402
from models.metrics import retrieval_report, target_ranks  # noqa: E402
from models.retriever.protocol import Split, held_out_event_ids, split_samples  # noqa: E402
from models.retriever.samples import build_samples  # noqa: E402
from models.retriever.stage import (  # noqa: E402
    TOPK_FILE,
    RetrieverRun,
    evaluate_run,
    hold_out,
    train_run,
    warehouse_inputs,
)
from models.retriever.train import train  # noqa: E402
from models.space import FeatureSpace
from models.tokenizer.stage import run_sid_stage  # noqa: E402
from sidflow.config import Params, load_params  # noqa: E402
from sidflow.stats import mean_sd  # noqa: E402
from sidflow.workdir import Workdir  # noqa: E402

PROTOCOL = "leave_one_out"
HR_KS, RANK_KS = [50, 100, 200], [5, 10, 20]
# Published figures on Beauty (leave-one-out, full ranking): TIGER (Rajput et al. 2023), the
# others from UNGER Table 3 and the list (ActionPiece, RPG, uSASRec).
PUBLISHED = {
    "TIGER": {"recall@10": 0.0648, "ndcg@10": 0.0384},
    "ActionPiece": {"recall@10": 0.0775, "ndcg@10": 0.0424},
    "RPG": {"recall@10": 0.0809, "ndcg@10": 0.0464},
    "SASRec-CE": {"recall@10": 0.0851, "ndcg@10": 0.0421},
    "uSASRec": {"recall@10": 0.0928, "ndcg@10": 0.0523},
    "UNGER": {"recall@10": 0.0939, "ndcg@10": 0.0559},
}
# The recipe's settings for review logs, as product settings (any of them can be overridden
# with --set): text SIDs, no profile embeddings (5-core users have no demographics and the
# user-id table overfits), per-trie-edge output vectors with a softmax over each node's
# children, the item head, 4000 steps with EMA weights and a validation every 1000 steps.
RECIPE = {
    "sid.embedding": "semantic",
    "retriever.model.profile_fields": [],
    "retriever.model.node_dim": 32,
    "retriever.model.trie_softmax": True,
    "retriever.model.item_head": True,
    "retriever.train.max_steps": 4000,
    "retriever.train.warmup_steps": 300,
    "retriever.train.ema_decay": 0.999,
    "retriever.train.eval_every": 1000,
    "retriever.eval.max_samples": None,  # every test user
}
# SASRec trains until validation Recall@10 has not improved for SASREC_PATIENCE evaluations of
# two epochs each (RecBole's stopping_step of 10 epochs), at most SASREC_MAX_STEPS; the best
# validation checkpoint is scored on test. The step it stopped at is in the results.
SASREC_MAX_STEPS, SASREC_EVAL_EPOCHS, SASREC_PATIENCE = 30000, 2, 5
# `unirec_auto`: the SID embeddings its validation probes compare (run_auto)
AUTO_EMBEDDINGS = ["semantic", "fused", "collaborative"]
# UNGER's ablation rows (method name: CKA in stage 1, IKD in stage 2), `unger_settings`
UNGER = {"unger_none": (False, False), "unger_cka": (True, False), "unger_cka_ikd": (True, True)}


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the JSON)."""
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def content_key(tables: SourceTables) -> str:
    """A digest of the source's tables: the benchmark's folder is keyed by it."""
    h = hashlib.sha1()
    for frame in (tables.events, tables.items, tables.users):
        h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:12]


def load_warehouse(tables: SourceTables, folder: Path) -> Warehouse:
    """The source's tables in a DuckDB warehouse of the benchmark's own (built once)."""
    wh = Warehouse(folder / "warehouse.duckdb")
    done = folder / "warehouse.done"
    if not done.exists():
        ev = tables.events.dropna(subset=["ts"])
        days = sorted(pd.to_datetime(ev["ts"], utc=True).dt.date.unique())
        items = tables.items.assign(first_seen=pd.to_datetime(tables.items["first_seen"]).dt.date)
        wh.upsert("items", items.drop_duplicates("item_id"))
        wh.upsert("users", tables.users.drop_duplicates("user_id"))
        wh.write_events(ev.drop_duplicates("event_id"), days)
        done.write_text(json.dumps(wh.counts()))
    return wh


class Dataset:
    """The source in a warehouse, its last day, the held-out ids and the split."""

    def __init__(self, params: Params, out: Path):
        t0 = time.perf_counter()
        tables = read_source(params.data)
        self.name = tables.report.get("category") or tables.name
        self.folder = (
            Workdir(params.workdir).root / "benchmarks" / f"{self.name}-{content_key(tables)}"
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.wh = load_warehouse(tables, self.folder)
        self.day = max(self.wh.days())
        self.held_out = held_out_event_ids(self.wh, self.day, PROTOCOL)
        self.events, self.items, self.users = warehouse_inputs(self.wh, self.day)
        self.space = FeatureSpace.build(self.items, self.users, params.data.scenes)
        samples = build_samples(self.events, self.space, params.retriever.model.history_len)
        self.split: Split = split_samples(samples, self.day, PROTOCOL)
        self.n_items = len(self.space.items)
        self.seconds = time.perf_counter() - t0
        self.out = out
        log(
            f"{self.name}: {len(self.events)} engagements, {self.n_items} items, through "
            f"{self.day}; train {len(self.split.train)}, valid {len(self.split.valid)}, test "
            f"{len(self.split.test)} ({self.seconds:.0f}s)"
        )

    def rows(self, samples) -> np.ndarray:  # noqa: ANN001 - Samples
        """Item-table rows of the samples' targets."""
        return self.space.ids("item_id", samples.item_id)

    def write_lists(self, method: str, users: np.ndarray, ranked_items: list[list[str]]) -> Path:
        """Test top-200 lists as JSONL: {"user", "items"}."""
        path = self.out / f"{method}_top200.jsonl"
        path.write_text(
            "".join(
                json.dumps({"user": str(u), "items": items}) + "\n"
                for u, items in zip(users, ranked_items, strict=True)
            )
        )
        return path

    def item_ids(self, rows: np.ndarray) -> list[list[str]]:
        """Item-table rows (n, k), 0 or -1 = none -> item ids."""
        ids = {r: i for i, r in self.space.item_row.items()}
        return [[ids[int(r)] for r in row if r > 0] for row in rows]


def report(ranked: np.ndarray, targets: np.ndarray) -> dict:
    """Protocol metrics from ranked item-table rows (n, >=200) and target rows (n,)."""
    return retrieval_report(target_ranks(ranked, targets), HR_KS, RANK_KS)


def run_popularity(ds: Dataset, params: Params, seed: int) -> dict:
    """The most engaged training items for everyone."""
    top = popularity_ranking(ds.rows(ds.split.train), ds.n_items, max(HR_KS))
    ranked = np.broadcast_to(top, (len(ds.split.test), len(top)))
    ds.write_lists("popularity", ds.split.test.user_id, ds.item_ids(ranked))
    return {"test": report(ranked, ds.rows(ds.split.test))}


def run_sasrec(ds: Dataset, params: Params, seed: int, loss: str) -> dict:
    """SASRec (BCE or CE) trained to convergence on validation Recall@10 (early stopping)."""
    torch.manual_seed(seed)
    tr = ds.split.train
    last = np.r_[tr.user_id[1:] != tr.user_id[:-1], True]  # each user's longest sequence
    data = sequences(tr.hist[last], ds.rows(tr)[last])
    model = SASRec(
        ds.n_items,
        params.retriever.model.history_len,
        d=64,
        n_layers=2,
        n_heads=2,
        dropout=0.3,
        loss=loss,
    )
    p = params.retriever.train.model_copy(
        update={
            "lr": 1e-3,
            "batch_size": 128,
            "epochs": 1000,
            "max_steps": SASREC_MAX_STEPS,
            "warmup_steps": 100,
            "weight_decay": 0.0,
            "seed": seed,
            "ema_decay": None,
        }
    )
    vh, vt = torch.from_numpy(ds.split.valid.hist), ds.rows(ds.split.valid)
    best: dict = {"recall@10": -1.0}

    def val(m: SASRec) -> dict:
        r = report(m.rank(vh, max(RANK_KS)), vt)
        r = {k: r[k] for k in ("recall@10", "ndcg@10")}  # the first one is watched
        if r["recall@10"] > best["recall@10"]:
            best.update(r, state={k: v.clone() for k, v in m.state_dict().items()})
        return r

    epoch = max(1, len(data["seq"]) // p.batch_size)
    res = train(
        model,
        data,
        p,
        progress=False,
        eval_fn=val,
        eval_every=SASREC_EVAL_EPOCHS * epoch,
        patience=SASREC_PATIENCE,
    )
    model.load_state_dict(best.pop("state"))
    t0 = time.perf_counter()
    ranked = model.rank(torch.from_numpy(ds.split.test.hist), min(max(HR_KS), ds.n_items))
    ds.write_lists(f"sasrec_{loss}", ds.split.test.user_id, ds.item_ids(ranked))
    return {
        "test": report(ranked, ds.rows(ds.split.test)),
        "valid_best": best,
        "valid_curve": res.evals,
        "best_step": max(res.evals, key=lambda e: e[1]["recall@10"])[0],
        "train_seconds": res.seconds,
        "steps": res.steps,
        "eval_seconds": time.perf_counter() - t0,
    }


def unger_settings(params: Params, name: str) -> Params:
    """UNGER's ablation (unger §4.4, Table 8) as settings: SIDs of the fused embedding whose
    stage-1 encoder trains with the cross-modality alignment (`cka`, unger §3.3) or without it
    (`none`: align_weight 0), and the retriever with intra-modality knowledge distillation
    (`cka_ikd`, unger §3.4.3 eqs. 11-12) or without."""
    cka, ikd = UNGER[name]
    encoder = params.sid.encoder.model_copy(
        update={"align_weight": params.sid.encoder.align_weight if cka else 0.0}
    )
    return params.model_copy(
        update={
            "sid": params.sid.model_copy(update={"embedding": "fused", "encoder": encoder}),
            "retriever": params.retriever.model_copy(
                update={"model": params.retriever.model.model_copy(update={"ikd": ikd})}
            ),
        }
    )


def run_retriever(
    ds: Dataset,
    params: Params,
    seed: int,
    name: str,
    run_name: str = "",
    decode: bool = True,
    reuse: bool = False,
) -> dict:
    """UniRec (or a variant such as tiger, or an UNGER ablation row) through the product's
    SID, train and eval stages; model selection on validation (`train_run`), then the split of
    `retriever.eval.held_out` decoded (test; valid for a lever) and reported under its name.
    `decode=False` stops after training (a probe: only its validation selection is read).
    `reuse`: a run folder of the same settings that finished training is not trained again;
    its held-out samples are re-written for this split (`hold_out`) and its weights decoded."""
    if name in UNGER:
        params = unger_settings(params, name)
    mp = variant(params.retriever.model, "unirec" if name in UNGER else name)
    p = params.model_copy(
        update={
            "retriever": params.retriever.model_copy(
                update={
                    "model": mp,
                    "train": params.retriever.train.model_copy(update={"seed": seed}),
                }
            ),
            "sid": params.sid.model_copy(update={"capacity": mp.capacity_sids}),
        }
    )
    sid_key = f"{'capacity' if mp.capacity_sids else 'plain'}-{p.sid.embedding}"
    if p.sid.embedding == "fused":
        sid_key += f"-align{p.sid.encoder.align_weight:g}"
    sid_out = ds.folder / f"sid-{sid_key}"
    t0 = time.perf_counter()
    stage = run_sid_stage(
        p,
        ds.wh.path,
        sid_out,
        as_of=ds.day,
        events_through=ds.day,
        held_out=ds.held_out,
        mode="fresh",
        progress=True,
    )
    sid_seconds = time.perf_counter() - t0
    log(
        f"{name}: SIDs {stage.metrics['version']} ({stage.metrics['embedding']}) in "
        f"{sid_seconds:.0f}s, collisions {stage.metrics['collision_rate_before_dedup']:.4f}"
    )
    settings = {
        "model": mp.model_dump(),
        "train": p.retriever.train.model_dump(),
        "sid": p.sid.model_dump(exclude={"encoder"}),
    }
    # keyed by the settings: a lever measured with --set never overwrites another run's folder
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    run = ds.folder / f"{run_name or name}-seed{seed}-{digest[:8]}"
    inputs = (p, ds.events, ds.items, ds.users, stage.table.frame, ds.day, run)
    common = {"codebook_size": p.sid.K, "protocol": PROTOCOL, "sid_folder": sid_out}
    if reuse and (run / "train.json").exists():
        info = RetrieverRun(**json.loads((run / "train.json").read_text()))
        held = p.retriever.eval.held_out
        if json.loads((run / "eval_meta.json").read_text()).get("split", "test") != held:
            n = hold_out(*inputs, **common)
            log(f"{name}: {run.name} reused; its held-out samples re-written: {n} {held}")
    else:
        info = train_run(*inputs, progress=True, **common)
    log(
        f"{name}: trained {info.steps} steps in {info.train_seconds:.0f}s; "
        f"selection {json.dumps(info.selection.get('checkpoint'))}"
    )
    trained = {
        "selection": info.selection,
        "sid_seconds": sid_seconds,
        "train_seconds": info.train_seconds,
        "steps": info.steps,
        "parameters": info.parameters,
        "sid_version": info.sid_version,
        "run": str(run),
        "settings": settings,
    }
    if not decode:
        return trained
    metrics = evaluate_run(p, run, progress=True).to_json()
    split = metrics["split"]
    lines = [json.loads(x) for x in (run / TOPK_FILE).read_text().splitlines()]
    ds.write_lists(
        (run_name or name) + ("" if split == "test" else f"-{split}"),
        np.array([x["user"] for x in lines]),
        [x["items"] for x in lines],
    )
    scores = {
        k: metrics[k]
        for k in metrics
        if k.split("@")[0] in ("recall", "ndcg", "hr") and not k.endswith("_purchase")
    }
    return trained | {split: scores, "eval_seconds": metrics["eval_seconds"]}


def with_embedding(params: Params, embedding: str, steps: int | None = None) -> Params:
    """`params` with SIDs of `embedding`; with `steps`, a probe's training budget (validated
    once, at its end)."""
    train = params.retriever.train
    if steps:
        train = train.model_copy(
            update={
                "max_steps": steps,
                "eval_every": steps,
                "warmup_steps": min(train.warmup_steps, steps // 4),
            }
        )
    return params.model_copy(
        update={
            "sid": params.sid.model_copy(update={"embedding": embedding}),
            "retriever": params.retriever.model_copy(update={"train": train}),
        }
    )


def run_auto(ds: Dataset, params: Params, seed: int, probe_steps: int) -> dict:
    """The recipe choosing its SIDs on validation: a short probe of each SID embedding
    (AUTO_EMBEDDINGS, `probe_steps` steps, validation Recall@10 of its last step), then the
    full recipe with the best one. On a catalogue without titles or with anonymised
    attributes the text SIDs lose their footing and the probes say so."""
    probes = {}
    for emb in AUTO_EMBEDDINGS:
        r = run_retriever(
            ds, with_embedding(params, emb, probe_steps), seed, "unirec", f"probe-{emb}", False
        )
        probes[emb] = r["selection"]["checkpoint"] | {"sid_seconds": r["sid_seconds"]}
        log(f"unirec_auto seed {seed}: probe {emb}: {json.dumps(probes[emb])}")
    chosen = max(probes, key=lambda e: probes[e]["recall@10"])
    r = run_retriever(ds, with_embedding(params, chosen), seed, "unirec", "unirec_auto")
    return r | {"auto": {"probe_steps": probe_steps, "probes": probes, "chosen": chosen}}


def table(per_seed: dict[int, dict[str, dict]], published: dict, split: str = "test") -> str:
    """Markdown table of `split`'s (test or valid) Recall/NDCG@10 and HR@50, mean ± sd over
    seeds, with the published figures (when the dataset has them) beneath."""
    methods = list(next(iter(per_seed.values())))
    cols = ["recall@10", "ndcg@10", "hr@50"]
    lines = ["| method | " + " | ".join(cols) + " | seeds |", "|---" * (len(cols) + 2) + "|"]
    for m in methods:
        vals = [[per_seed[s][m][split][c] for s in per_seed] for c in cols]
        lines.append(f"| {m} | " + " | ".join(mean_sd(v) for v in vals) + f" | {len(per_seed)} |")
    for name, fig in published.items():
        row = " | ".join(f"{fig[c]:.4f}" if c in fig else "-" for c in cols)
        lines.append(f"| {name} (published) | {row} | - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the methods for each seed; each result is also written to --out as it finishes,
    then the mean ± sd table over seeds."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--source", default="amazon", help="data.source (amazon, parquet, csv, recbole)"
    )
    ap.add_argument(
        "--data", default=None, help="data.path (amazon: the Beauty folder beside the repo)"
    )
    ap.add_argument("--methods", default="popularity,unirec,sasrec_ce,sasrec_bce,tiger")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--probe-steps", type=int, default=1000, help="unirec_auto: training steps per probe"
    )
    ap.add_argument(
        "--validation-only",
        action="store_true",
        help="retriever methods: train and select as usual, then decode every validation user "
        "instead of test (retriever.eval.held_out=valid; test is never decoded): a lever",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="retriever methods: a run of the same settings that finished training (e.g. a "
        "lever measured with --validation-only) is decoded on this run's split, not retrained",
    )
    ap.add_argument("--out", default=None, help="folder for the JSON and the top-200 lists")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the recipe or params.yaml, e.g. "
        "--set retriever.train.max_steps=2000",
    )
    args = ap.parse_args(argv)
    split = "valid" if args.validation_only else "test"
    suffix = "-valid" if args.validation_only else ""  # result files of a lever kept apart
    if args.validation_only and {"popularity", "sasrec_ce", "sasrec_bce", "unirec_auto"} & set(
        args.methods.split(",")
    ):
        ap.error("--validation-only measures retriever methods (unirec, variants, unger_*)")
    overrides = {**RECIPE, "data.source": args.source, "retriever.eval.held_out": split}
    if args.data:
        overrides["data.path"] = args.data
    overrides.update(dict(kv.split("=", 1) for kv in args.set))
    params = load_params(overrides=overrides)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    probe = Workdir(params.workdir).reports / "benchmarks"
    ds = Dataset(params, probe)
    ds.out = Path(args.out) if args.out else probe / ds.name
    ds.out.mkdir(parents=True, exist_ok=True)
    per_seed: dict[int, dict[str, dict]] = {}
    for seed in args.seeds:
        results = per_seed.setdefault(seed, {})
        for m in args.methods.split(","):
            log(f"{m} seed {seed}: start")
            t = time.perf_counter()
            if m == "popularity":
                r = run_popularity(ds, params, seed)
            elif m in ("sasrec_ce", "sasrec_bce"):
                r = run_sasrec(ds, params, seed, m.split("_")[1])
            elif m == "unirec_auto":
                r = run_auto(ds, params, seed, args.probe_steps)
            else:
                r = run_retriever(ds, params, seed, m, reuse=args.reuse)
            r["seconds"] = time.perf_counter() - t
            results[m] = r
            (ds.out / f"{m}-seed{seed}{suffix}.json").write_text(
                json.dumps(r, indent=2, default=float)
            )
            log(
                f"{m} seed {seed} {split}: {json.dumps({k: round(v, 4) for k, v in r[split].items()})}"
            )
    published = PUBLISHED if ds.name == "Beauty" and split == "test" else {}
    summary = {
        "dataset": ds.name,
        "source": {"source": params.data.source, "path": str(params.data.path)},
        "protocol": "leave-one-out on the last day, history <= 20, full ranking",
        "as_of": str(ds.day),
        "split": split,
        "users_test": len(ds.split.test),
        "seeds": args.seeds,
        "threads": args.threads,
        "data_seconds": ds.seconds,
        "total_seconds": time.perf_counter() - t0,
        "methods": {
            m: {
                k: mean_sd([per_seed[s][m][split][k] for s in per_seed])
                for k in per_seed[args.seeds[0]][m][split]
                if k != "samples"
            }
            for m in per_seed[args.seeds[0]]
        },
        "seconds": {
            m: mean_sd([per_seed[s][m]["seconds"] for s in per_seed])
            for m in per_seed[args.seeds[0]]
        },
        "table": table(per_seed, published, split),
        "published": published,
        "lists": str(ds.out),
        "date": dt.date.today().isoformat(),
    }
    # one file per (methods, seeds): runs of other methods into the same --out keep theirs
    seeds = "-".join(map(str, args.seeds))
    name = f"summary-{args.methods.replace(',', '+')}-seeds{seeds}{suffix}.json"
    (ds.out / name).write_text(json.dumps(summary, indent=2, default=float))
    log("\n" + summary["table"])
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
