"""The SID stage: the one entry point behind `sidflow sid build`, the DVC stages and Dagster.

data (warehouse or parquet folder, as of a day) -> item embeddings -> SID table, written as

    <out>/artefacts/   sid_table.parquet, codebooks.safetensors, embeddings.safetensors,
                       [encoder.safetensors, encoder_items.parquet], manifest.json
                       (deterministic: DVC versions this folder; its DVC hash is the
                       Dagster data version)
    <out>/metrics.json capacity vs plain RQ-KMeans metrics, churn, timings (DVC metrics)
    <out>/plots/       concentration.png (UniRec Fig. 3), loads.png, concentration.csv

Modes: fresh (no previous version); rebuild (warm-start the encoder and the codebooks
from the previous version, re-learn every code, report churn); incremental (old codes
frozen, only new catalogue items are coded from their content).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

from models.tokenizer.data import TokenizerData, load_tokenizer_data
from models.tokenizer.dvc_hash import dvc_dir_hash
from models.tokenizer.embeddings import EncoderArtefact, compute_embeddings, embed_from_content
from models.tokenizer.incremental import add_new_items, sid_churn
from models.tokenizer.metrics import concentration, sid_report
from models.tokenizer.outputs import EMBEDDINGS_FILE, write_artefacts, write_plots
from models.tokenizer.sids import build_sids
from models.tokenizer.table import SidTable, load_sid_table
from models.tokenizer.weights import weights_from_counts, weights_from_series
from sidflow.config import Params, SidParams
from sidflow.workdir import Workdir

ARTEFACTS = "artefacts"


@dataclass
class SidVersion:
    """A built SID version read back from disk (what the next day starts from)."""

    folder: Path
    table: SidTable
    vectors: np.ndarray  # (N, D) embeddings aligned with table rows
    source: str
    encoder: EncoderArtefact | None
    manifest: dict

    @classmethod
    def load(cls, out_dir: Path) -> SidVersion:
        """Read `<out_dir>/artefacts`."""
        art = Path(out_dir) / ARTEFACTS
        with safe_open(str(art / EMBEDDINGS_FILE), framework="numpy") as f:
            vectors, source = f.get_tensor("vectors"), f.metadata()["source"]
        manifest = json.loads((art / "manifest.json").read_text())
        return cls(
            Path(out_dir), load_sid_table(art), vectors, source, EncoderArtefact.load(art), manifest
        )


@dataclass
class StageResult:
    """What one run produced."""

    out_dir: Path
    table: SidTable
    metrics: dict
    plots: dict[str, Path] = field(default_factory=dict)
    data_version: str = ""

    @property
    def artefacts(self) -> Path:
        """The DVC-versioned folder."""
        return self.out_dir / ARTEFACTS


def previous_day_dir(sid_dir: Path, day: dt.date) -> Path | None:
    """The latest `day=<d>` version folder before `day` that holds a complete SID table."""
    found = []
    for p in sid_dir.glob("day=*"):
        try:
            d = dt.date.fromisoformat(p.name.split("=", 1)[1])
        except ValueError:
            continue
        if d < day and (p / ARTEFACTS / "codebooks.safetensors").exists():
            found.append((d, p))
    return max(found)[1] if found else None


def _device(setting: str) -> str:
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("sid.device=cuda, but no CUDA device is available")
    return (
        "cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu"
    )


def choose_mode(
    sid: SidParams, prev: SidVersion | None, as_of: dt.date | None, has_engagements: bool
) -> tuple[str, str]:
    """(mode, reason): fresh without a previous version; otherwise `sid.update`, except that
    incremental turns into a rebuild when the codes are stale: settings changed, the previous
    version had to fall back from the configured embedding (e.g. built before any
    engagement), or `sid.rebuild_every_days` have passed since the last full build."""
    if prev is None:
        return "fresh", "no previous version"
    if sid.update == "rebuild":
        return "rebuild", "sid.update=rebuild"
    meta = prev.table.meta
    changed = [k for k in ("K", "L", "capacity") if meta.get(k) != getattr(sid, k)]
    if changed:
        return "rebuild", f"settings changed since {prev.table.version}: {changed}"
    if prev.source != sid.embedding and has_engagements:
        return "rebuild", f"previous version used {prev.source}, configured {sid.embedding}"
    last = prev.manifest.get("last_full_build")
    if (
        sid.rebuild_every_days
        and as_of
        and last
        and (as_of - dt.date.fromisoformat(last)).days >= sid.rebuild_every_days
    ):
        return "rebuild", f"last full build {last} >= {sid.rebuild_every_days} days ago"
    return "incremental", "sid.update=incremental"


@dataclass
class ItemWeights:
    """Capacity weights w_i (UniRec §3.2) of the catalogue's items, and what they count."""

    w: np.ndarray  # smoothed, > 0, aligned with the items
    raw: np.ndarray  # before smoothing (0 for never-shown items)
    basis: str  # e.g. "exposures_30d+1", "interactions+1"

    def by_item(self, ids: np.ndarray) -> pd.Series:
        """w indexed by item id."""
        return pd.Series(self.w, index=ids)


@dataclass
class Codes:
    """A SID table and the item vectors it quantised (rows follow the table)."""

    table: SidTable
    vectors: np.ndarray
    source: str  # semantic | collaborative | fused
    encoder: EncoderArtefact | None
    history: dict = field(default_factory=dict)  # encoder training curves
    embed_seconds: float = 0.0  # of the time to code: computing the item vectors


def item_weights(td: TokenizerData, weights: pd.Series | None, sid: SidParams) -> ItemWeights:
    """The feature store's per-item weights when given, else counts from the data."""
    ids = td.item_ids
    if weights is not None:
        w = weights_from_series(weights, ids, sid.weight_smoothing)
        raw = weights.reindex(ids).fillna(0.0).to_numpy(np.float64)
        return ItemWeights(w, raw, f"{weights.name or 'weights'}+{sid.weight_smoothing:g}")
    w, basis = weights_from_counts(td.counts, sid.weights, sid.weight_smoothing)
    return ItemWeights(w, w - sid.weight_smoothing if basis != "uniform" else w, basis)


def version_name(
    td: TokenizerData, sid: SidParams, mode: str, prev: SidVersion | None, basis: str
) -> str:
    """`sid-<as_of>-<hash of data, settings, mode, previous version, weights>`."""
    key = json.dumps(
        [td.fingerprint, sid.model_dump(), mode, prev.table.version if prev else None, basis]
    )
    return f"sid-{td.as_of or 'all'}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def incremental_codes(
    td: TokenizerData,
    prev: SidVersion,
    weights: pd.Series,
    sid: SidParams,
    version: str,
    cache: Path,
    device: str,
) -> Codes:
    """Old items keep their codes; new catalogue items are embedded from their content and
    placed where the capacity allows."""
    t0 = time.perf_counter()
    ids = td.item_ids
    new = ~np.isin(ids, prev.table.frame["item_id"].to_numpy())
    old_vectors = pd.DataFrame(prev.vectors, index=prev.table.frame["item_id"])
    known = old_vectors.reindex(ids).to_numpy(np.float32)  # NaN rows for new items
    new_vectors = (
        embed_from_content(td.items, new, prev.source, prev.encoder, known, cache, device)
        if new.any()
        else np.zeros((0, prev.vectors.shape[1]), np.float32)
    )
    embed_seconds = time.perf_counter() - t0
    table = add_new_items(prev.table, ids[new], new_vectors, weights, sid.tau, version)
    every = np.concatenate([prev.table.frame["item_id"].to_numpy(), ids[new]])
    vectors = np.concatenate([prev.vectors, new_vectors])[np.argsort(every, kind="stable")]
    return Codes(table, vectors, prev.source, prev.encoder, {}, embed_seconds)


def learned_codes(
    td: TokenizerData,
    w: np.ndarray,
    sid: SidParams,
    warm: SidVersion | None,
    version: str,
    cache: Path,
    device: str,
    progress: bool,
) -> Codes:
    """Embed every item (warm-starting the encoder and codebooks from `warm` on a rebuild) and
    quantise them with capacity-constrained residual k-means (UniRec Alg. 1)."""
    t0 = time.perf_counter()
    emb, encoder = compute_embeddings(
        td, sid, cache, warm.encoder if warm else None, device, progress
    )
    embed_seconds = time.perf_counter() - t0
    init = None
    if warm is not None and warm.table.codebooks.shape == (sid.L, sid.K, emb.vectors.shape[1]):
        init = warm.table.codebooks
    table = build_sids(
        emb.vectors,
        w,
        sid.K,
        sid.L,
        sid.tau,
        sid.capacity,
        sid.seed,
        td.item_ids,
        max_iter=sid.max_iter,
        tol=sid.tol,
        init_sample=sid.init_sample,
        init_codebooks=init,
        previous=warm.table.frame if warm else None,
        version=version,
        device=device,
        progress=progress,
    )
    # the ids are sorted, so the vectors' rows match the table's
    return Codes(table, emb.vectors, emb.source, encoder, emb.history, embed_seconds)


def method_reports(
    codes: Codes, weights: ItemWeights, ids: np.ndarray, sid: SidParams, device: str
) -> tuple[str, dict, dict]:
    """(method, {method: report}, {method: loads}) over the table's rows with today's weights,
    plus the other method (plain vs capacity RQ-KMeans) for the side-by-side table."""
    table = codes.table
    rows = table.frame["item_id"].to_numpy()
    w_rows = weights.by_item(ids).reindex(rows).fillna(0.0).to_numpy()
    raw_rows = pd.Series(weights.raw, index=ids).reindex(rows).fillna(0.0).to_numpy()
    method = "capacity" if sid.capacity else "plain"
    report = sid_report(
        codes.vectors, table.codes, table.codebooks, w_rows, raw_rows, sid.K, sid.tau
    )
    reports, loads = {method: report}, {method: table.loads}
    if sid.compare_plain:
        other = build_sids(
            codes.vectors,
            np.where(w_rows > 0, w_rows, sid.weight_smoothing),
            sid.K,
            sid.L,
            sid.tau,
            not sid.capacity,
            sid.seed,
            rows,
            max_iter=sid.max_iter,
            tol=sid.tol,
            init_sample=sid.init_sample,
            device=device,
        )
        name = "plain" if sid.capacity else "capacity"
        reports[name] = sid_report(
            codes.vectors, other.codes, other.codebooks, w_rows, raw_rows, sid.K, sid.tau
        )
        loads[name] = other.loads
    reports["_raw_rows"] = raw_rows  # popped by the caller (item concentration)
    return method, reports, loads


def run_sid_stage(
    params: Params,
    data: Path | str,
    out_dir: Path | str,
    as_of: dt.date | None = None,
    previous: Path | None = None,
    mode: str | None = None,
    weights: pd.Series | None = None,
    events_through: dt.date | None = None,
    progress: bool = False,
    held_out: pd.Series | None = None,
) -> StageResult:
    """Build the SID version of `data` as of `as_of` into `out_dir` (see module doc).

    previous: an earlier version folder (its `artefacts/`) to update from; mode: None =
    `choose_mode`; weights: per-item exposure weights indexed by item_id (e.g. the feature
    store's), else counted from `data`; events_through: last event day (default as_of);
    held_out: event ids the embeddings and counts must not see (leave-one-out evaluation).
    Steps: read the data -> weights -> mode and version -> codes (incremental, or learned)
    -> metrics of both methods -> artefacts, plots and metrics.json.
    """
    sid, out_dir = params.sid, Path(out_dir)
    clock = {"start": time.perf_counter()}
    device = _device(sid.device)
    cache = Workdir(params.workdir).sid_dir / "cache"
    td = load_tokenizer_data(data, as_of, events_through, held_out)
    ids = td.item_ids
    iw = item_weights(td, weights, sid)
    prev = SidVersion.load(previous) if previous else None
    if mode is None:
        mode, reason = choose_mode(sid, prev, as_of, any(len(q) > 1 for q in td.sequences))
    else:
        reason = "requested"
    if mode not in ("fresh", "rebuild", "incremental") or (mode != "fresh" and prev is None):
        raise ValueError(
            f"SID update mode '{mode}' needs one of fresh, rebuild, incremental "
            "(the last two with a previous version)"
        )
    version = version_name(td, sid, mode, prev, iw.basis)
    if mode == "incremental":
        codes = incremental_codes(td, prev, iw.by_item(ids), sid, version, cache, device)
    else:
        warm = prev if mode == "rebuild" else None
        codes = learned_codes(td, iw.w, sid, warm, version, cache, device, progress)
    clock["sids"] = time.perf_counter()
    day = str(as_of) if as_of else None
    table = codes.table
    table.meta.update({"embedding": codes.source, "weights": iw.basis, "mode": mode, "as_of": day})
    method, reports, loads = method_reports(codes, iw, ids, sid, device)
    raw_rows = reports.pop("_raw_rows")
    clock["compare"] = time.perf_counter()
    manifest = {
        "version": version,
        "as_of": day,
        "mode": mode,
        "events_through": str(td.events_through) if td.events_through else None,
        "last_full_build": prev.manifest.get("last_full_build") if mode == "incremental" else day,
        "data_fingerprint": td.fingerprint,
        "sid": sid.model_dump(),
        "weights": iw.basis,
        "embedding": codes.source,
        "previous_version": prev.table.version if prev else None,
        "items": len(table.frame),
        "held_out_events": td.held_out_events,
    }
    art = write_artefacts(
        out_dir / ARTEFACTS, table, codes.vectors, codes.source, codes.encoder, manifest
    )
    w_rows = iw.by_item(ids).reindex(table.frame["item_id"]).fillna(0.0).to_numpy()
    title = f"SID exposure concentration ({iw.basis.split('+')[0]}), K={sid.K}, L={sid.L}, "
    plots = write_plots(
        out_dir / "plots",
        reports,
        loads,
        float(w_rows.sum()) / sid.K,
        sid.tau,
        title + f"tau={sid.tau:g}",
    )
    metrics = stage_metrics(
        manifest, reason, table, method, reports, raw_rows, prev, codes, sid, clock
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return StageResult(out_dir, table, metrics, plots, dvc_dir_hash(art))


def stage_metrics(
    manifest: dict,
    reason: str,
    table: SidTable,
    method: str,
    reports: dict,
    raw_rows: np.ndarray,
    prev: SidVersion | None,
    codes: Codes,
    sid: SidParams,
    clock: dict,
) -> dict:
    """metrics.json: what the SID gate, the Dagster asset and DVC read."""
    mode = manifest["mode"]
    rows = table.frame["item_id"].to_numpy()
    history = codes.history
    return {
        "version": manifest["version"],
        "mode": mode,
        "mode_reason": reason,
        "as_of": manifest["as_of"],
        "events_through": manifest["events_through"],
        "held_out_events": manifest["held_out_events"],
        "items": len(rows),
        "new_items": int(table.meta.get("new_items", 0)) if mode == "incremental" else None,
        "embedding": codes.source,
        "weights": manifest["weights"],
        "K": sid.K,
        "L": sid.L,
        "tau": sid.tau,
        "table_method": method,
        "collision_rate_before_dedup": table.meta["collision_rate_before_dedup"],
        "max_dedup": table.meta["max_dedup"],
        "unique_after_dedup": bool(len(table.sid_to_item()) == len(rows)),
        # samples the repair could place nowhere, per layer (each can overload one code);
        # None in incremental mode, where old codes are frozen and loads may drift.
        "unplaceable": None if mode == "incremental" else table.meta["unplaceable"],
        **reports,
        # Each item its own unit: the floor any SID reaches once combinations ~ items.
        "item_concentration": concentration(np.arange(len(rows))[:, None], raw_rows)["sid0"],
        "churn": sid_churn(prev.table, table) if prev else None,
        "encoder": {
            "epochs": len(history.get("next_item", [])),
            "next_item_loss": (history.get("next_item") or [None])[-1],
            "align_loss": (history.get("align") or [None])[-1],
        },
        "seconds": {
            "embeddings": round(codes.embed_seconds, 2),
            "sids": round(clock["sids"] - clock["start"] - codes.embed_seconds, 2),
            "compare": round(clock["compare"] - clock["sids"], 2),
            "total": round(time.perf_counter() - clock["start"], 2),
        },
    }
