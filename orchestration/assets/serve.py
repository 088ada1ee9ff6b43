"""Stage `serve`: the BentoML bundle of the day's gated models, and promotion.

retriever_eval[d] (+ ranker_eval[d]) --gates--> bento_bundle[d] -> promotion[d]
The gates are blocking checks upstream, so a candidate that misses one never reaches these
assets: the registry is left as it was and the promoted model keeps serving.
Promotion: the first gated bundle is promoted directly (nothing serves yet). After that a
gated bundle becomes the candidate (treatment bucket); a candidate is promoted to control when
the day's online A/B evidence from the exposure log shows its CTR within
`serving.ab_max_ctr_drop` of control's with enough requests in both buckets.
"""

import datetime as dt
import json
import time

import dagster as dg
import pandas as pd

from models.retriever.samples import serving_behaviour
from models.tokenizer.dvc_hash import dvc_dir_hash
from orchestration.resources import SidflowResource, WarehouseResource
from serving.build import build_bento
from serving.bundle import BundleManifest, histories, popularity, read_manifest, save_bundle
from serving.exposure_log import read_day
from sidflow.registry import Registry

OWNER = "team:ml-platform"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def ab_evidence(sidflow: SidflowResource, warehouse: WarehouseResource, day: dt.date) -> dict:
    """Per bucket and model: requests, exposures, clicks and CTR of `day` (exposure log x
    the day's click events in the warehouse)."""

    log = read_day(sidflow.paths.root, day)
    if log.empty:
        return {}
    clicks = warehouse.warehouse.query(
        "SELECT request_id, item_id FROM events WHERE day = ? AND event_type = 'click'", [day]
    ).drop_duplicates()
    clicked = log.merge(clicks.assign(clicked=1), on=["request_id", "item_id"], how="left")
    out = {}
    for (bucket, model), g in clicked.groupby(["bucket", "model"]):
        n = len(g)
        out[bucket] = {
            "model": model,
            "requests": int(g["request_id"].nunique()),
            "exposures": n,
            "clicks": int(g["clicked"].fillna(0).sum()),
            "ctr": float(g["clicked"].fillna(0).sum() / max(n, 1)),
        }
    return out


def decide(state: dict, evidence: dict, sp) -> tuple[bool, str]:  # noqa: ANN001 - ServingParams
    """Whether the registry's candidate wins its A/B test on `evidence`, and why."""
    cand, prom = state.get("candidate"), state.get("promoted")
    if not cand or not prom:
        return False, "no candidate under test"
    by_model = {e["model"]: e for e in evidence.values()}
    c, p = by_model.get(cand["tag"]), by_model.get(prom["tag"])
    if not c or not p:
        return False, "no A/B traffic for the candidate and the promoted model on this day"
    if min(c["requests"], p["requests"]) < sp.ab_min_requests:
        return (
            False,
            f"too few requests ({c['requests']} vs {p['requests']}; need {sp.ab_min_requests})",
        )
    bar = p["ctr"] * (1 - sp.ab_max_ctr_drop)
    verdict = c["ctr"] >= bar
    return verdict, f"candidate CTR {c['ctr']:.4f} vs control {p['ctr']:.4f} (bar {bar:.4f})"


def training_window(first: dt.date, day: dt.date, run) -> str:  # noqa: ANN001 - Path
    """The engagements the retriever learnt from, as the manifest states it."""
    protocol = json.loads((run / "train.json").read_text()).get("protocol", "day")
    if protocol == "leave_one_out":
        return f"{first}..{day} but each user's last two engagements (leave-one-out)"
    return f"{first}..{day - dt.timedelta(days=1)}"


def build_serve_assets(
    partitions: dg.PartitionsDefinition, asset_keys: set[dg.AssetKey]
) -> list[dg.AssetsDefinition]:
    """bento_bundle and promotion, downstream of every gated asset present in the graph."""
    gated = [
        k
        for k in ("retriever_eval", "ranker_eval", "aligned_retriever")
        if dg.AssetKey(k) in asset_keys
    ]

    @dg.asset(
        group_name="serve",
        partitions_def=partitions,
        deps=["sid_table", *gated],
        kinds={"bentoml", "safetensors"},
        owners=[OWNER],
        description="The day's recommender bundle (retriever + ranker when trained, "
        "vocabularies, histories, popularity fallback) saved to the BentoML model store.",
    )
    def bento_bundle(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day = _day(context)
        wd, params = sidflow.paths, sidflow.params
        wh = warehouse.warehouse
        run = wd.retriever_dir(day)
        aligned = wd.aligned_retriever_dir(day)
        use_aligned = (aligned / "metrics.json").exists() and json.loads(
            (aligned / "metrics.json").read_text()
        ).get("accepted", False)  # RFT + DPO kept HR@50 within max_hr_drop
        parts = {"retriever": aligned if use_aligned else run}
        ranker = wd.ranker_dir(day)
        if (ranker / "config.json").exists():
            parts["ranker"] = ranker
        events = wh.query(
            "SELECT user_id, item_id, ts, scene, event_type FROM events "
            "WHERE day <= ? AND event_type <> 'exposure'",
            [day],
        )
        tables = {
            "catalogue": wh.query("SELECT * FROM items WHERE first_seen <= ?", [day]),
            "users": wh.query("SELECT * FROM users"),
            "histories": histories(events, params.retriever.model.history_len),
            "popularity": popularity(events, day),
        }
        sid_metrics = json.loads((wd.sid_dir / f"day={day}" / "metrics.json").read_text())
        metrics = {"retriever": json.loads((run / "metrics.json").read_text())}
        ranker_metrics = wd.ranker_eval_dir(day) / "metrics.json"
        if ranker_metrics.exists():
            metrics["ranker"] = json.loads(ranker_metrics.read_text())
        first = wh.query("SELECT min(day) AS d FROM events")["d"].iloc[0]
        manifest = BundleManifest(
            day=day.isoformat(),
            # click where the source logs clicks, else its most common engagement (reviews)
            task_behaviour=serving_behaviour(events["event_type"]),
            sid_version=sid_metrics["version"],
            sid_dvc_hash=dvc_dir_hash(wd.sid_dir / f"day={day}" / "artefacts"),
            window=training_window(pd.Timestamp(first).date(), day, run),
            parts=sorted(parts),
            metrics=metrics,
        )
        tag = save_bundle(wd.root, day, parts, tables, manifest)
        t0 = time.perf_counter()
        bento = build_bento(wd.root, tag)  # bentofile.yaml + this bundle, built offline
        build_s = round(time.perf_counter() - t0, 1)
        (wd.reports / "bundles").mkdir(parents=True, exist_ok=True)
        (wd.reports / "bundles" / f"day={day}.json").write_text(
            json.dumps({"tag": tag, "bento": bento, **manifest.to_json()}, indent=2, default=str)
        )
        return dg.MaterializeResult(
            metadata={
                "tag": tag,
                "bento": bento["tag"],
                "bento_path": dg.MetadataValue.path(bento["path"]),
                "bento_build_s": build_s,
                "sid_version": manifest.sid_version,
                "sid_dvc_hash": manifest.sid_dvc_hash,
                "window": manifest.window,
                "parts": dg.MetadataValue.json(manifest.parts),
                "hr_at_50": metrics["retriever"].get("hr@50"),
                "users_with_history": len(tables["histories"]["user_id"].unique()),
                "preview": dg.MetadataValue.md(
                    "| field | value |\n|---|---|\n"
                    + "\n".join(
                        f"| {k} | {v} |" for k, v in manifest.to_json().items() if k != "metrics"
                    )
                ),
            }
        )

    @dg.asset(
        group_name="serve",
        partitions_def=partitions,
        deps=[bento_bundle, "warehouse_events"],
        kinds={"bentoml"},
        owners=[OWNER],
        description="Registry update: the gated bundle becomes the candidate (or the promoted "
        "model when nothing serves yet); a candidate that won the day's A/B test is promoted.",
    )
    def promotion(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day = _day(context)
        wd = sidflow.paths
        registry = Registry(wd.registry)
        tag = json.loads((wd.reports / "bundles" / f"day={day}.json").read_text())["tag"]
        version = {"tag": tag, **read_manifest(wd.root, tag)}
        evidence = ab_evidence(sidflow, warehouse, day)
        state = registry.current()
        actions = []
        (exposures,) = warehouse.warehouse.query(
            "SELECT count(*) AS n FROM events WHERE event_type = 'exposure' AND day <= ?", [day]
        )["n"]
        if not state.get("promoted"):
            registry.promote(version, reason="first gated bundle: nothing was serving")
            actions.append(f"promoted {tag} (bootstrap)")
        elif not exposures:  # a review-only source: no CTR to compare, the gates decide
            why = "no A/B CTR: the source logs no exposures; promoted on the offline gates"
            registry.promote(version, reason=f"{day}: {why}")
            actions.append(f"promoted {tag}: {why}")
        else:
            won, why = decide(state, evidence, sidflow.params.serving)
            if won:
                registry.promote(reason=f"A/B on {day}: {why}")
                actions.append(f"promoted candidate {state['candidate']['tag']}: {why}")
            else:
                actions.append(f"kept {state['promoted']['tag']} promoted: {why}")
            if registry.current()["promoted"]["tag"] != tag:
                registry.set_candidate(version)
                actions.append(f"candidate {tag} (treatment bucket)")
        final = registry.current()
        return dg.MaterializeResult(
            metadata={
                "promoted": (final.get("promoted") or {}).get("tag", "none"),
                "candidate": (final.get("candidate") or {}).get("tag", "none"),
                "actions": dg.MetadataValue.json(actions),
                "ab_evidence": dg.MetadataValue.json(evidence),
                "registry": dg.MetadataValue.path(str(wd.registry)),
            }
        )

    return [bento_bundle, promotion]
