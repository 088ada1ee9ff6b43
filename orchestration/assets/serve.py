"""Stage `serve`: the BentoML bundle of the day's gated models, and promotion.

retriever_eval[d] (+ ranker_eval[d]) --gates--> bento_bundle[d] -> promotion[d]
The gates are blocking checks upstream, so a candidate that misses one never reaches these
assets: the registry is left as it was and the promoted model keeps serving.
Promotion: the first gated bundle is promoted directly (nothing serves yet). After that a
gated bundle becomes the candidate (treatment bucket); a candidate is promoted to control when
the day's online A/B test (exposure log x the day's clicks and purchases) says so
(`serving/abstats.py`, `serving.ab`): enough users in both buckets, no sample-ratio mismatch,
no significant guardrail drop, and the primary metric's lift interval above zero. The analysis
is written to `reports/ab/day=<d>.json`.
"""

import datetime as dt
import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from models.retriever.samples import serving_behaviour
from models.tokenizer.dvc_hash import dvc_dir_hash
from models.tokenizer.versions import recorded_version
from models.tracking import RunLink, add_to_run
from orchestration.resources import SidflowResource, WarehouseResource
from serving import abstats
from serving.abstats import Decision, arm_summary, user_table
from serving.build import build_bento
from serving.bundle import BundleManifest, histories, popularity, read_manifest, save_bundle
from serving.exposure_log import read_day
from sidflow.atomic import write_text_atomic
from sidflow.registry import Registry

OWNER = "team:ml-platform"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def ab_users(sidflow: SidflowResource, warehouse: WarehouseResource, day: dt.date) -> pd.DataFrame:
    """Per bucket and user of `day`: requests, exposures, clicks, purchases, GMV (the exposure
    log x the day's click and purchase events in the warehouse); the bucket's model tag in
    `model`."""

    log = read_day(sidflow.paths.exposure_logs, day)
    if log.empty:
        return pd.DataFrame()
    responses = warehouse.warehouse.query(
        "SELECT request_id, item_id, event_type, price FROM events "
        "WHERE day = ? AND event_type IN ('click', 'purchase')",
        [day],
    )
    users = user_table(log, responses)
    models = log.groupby("bucket")["model"].agg(lambda m: m.mode().iloc[0]).to_dict()
    return users.assign(model=users["arm"].map(models))


def decide(state: dict, users: pd.DataFrame, sp) -> Decision:  # noqa: ANN001 - ServingParams
    """Whether the registry's candidate wins its A/B test against the promoted model."""
    cand, prom = state.get("candidate"), state.get("promoted")
    if not cand or not prom:
        return Decision(False, "no candidate under test", None, [])
    arm_of = {} if users.empty else users.groupby("model")["arm"].first().to_dict()
    t, c = arm_of.get(cand["tag"]), arm_of.get(prom["tag"])
    if not t or not c or t == c:
        return Decision(
            False, "no A/B traffic for the candidate and the promoted model on this day", None, []
        )
    shares = {b.name: b.share for b in sp.buckets}
    return abstats.decide(users, t, c, shares, sp.ab)


def training_window(first: dt.date, day: dt.date, run) -> str:  # noqa: ANN001 - Path
    """The engagements the retriever learnt from, as the manifest states it."""
    protocol = json.loads((run / "train.json").read_text()).get("protocol", "day")
    if protocol == "leave_one_out":
        return f"{first}..{day} but each user's last two engagements (leave-one-out)"
    return f"{first}..{day - dt.timedelta(days=1)}"


def mlflow_runs(parts: dict[str, Path], aligned: Path | None, run: Path) -> dict[str, RunLink]:
    """The MLflow runs behind a bundle's parts: the retriever's training run (and the alignment
    run when the aligned retriever is served), the ranker's."""
    out = {}
    sources = {"retriever": run / "train.json"}
    if aligned is not None:
        sources["alignment"] = aligned / "metrics.json"
    if "ranker" in parts:
        sources["ranker"] = parts["ranker"] / "train.json"
    for name, path in sources.items():
        link = (
            RunLink.from_json(json.loads(path.read_text()).get("mlflow")) if path.exists() else None
        )
        if link is not None and link.run_id:
            out[name] = link
    return out


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
        artefacts = wd.sid_dir / f"day={day}" / "artefacts"
        dvc_version = recorded_version(params, artefacts)  # added by sid_table
        runs = mlflow_runs(parts, aligned if use_aligned else None, run)
        manifest = BundleManifest(
            day=day.isoformat(),
            # click where the source logs clicks, else its most common engagement (reviews)
            task_behaviour=serving_behaviour(events["event_type"]),
            sid_version=sid_metrics["version"],
            sid_dvc_hash=dvc_version.md5 if dvc_version else dvc_dir_hash(artefacts),
            window=training_window(pd.Timestamp(first).date(), day, run),
            parts=sorted(parts),
            metrics=metrics,
            sid_dvc_path=dvc_version.path if dvc_version else "",
            sid_dvc_remote=dvc_version.remote if dvc_version else "",
            mlflow_runs={k: v.to_json() for k, v in runs.items()},
            feature_service="ranker" if "ranker" in parts else "",
        )
        tag = save_bundle(wd.root, day, parts, tables, manifest, params.serving)
        for link in runs.values():  # each model's MLflow run names the bundle that serves it
            add_to_run(
                link,
                tags={
                    "sidflow.bentoml_tag": tag,
                    "sidflow.sid_dvc_hash": manifest.sid_dvc_hash,
                },
            )
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
                "sid_dvc_path": manifest.sid_dvc_path,
                "mlflow_runs": dg.MetadataValue.json(
                    {k: v["run_id"] for k, v in manifest.mlflow_runs.items()}
                ),
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
        users = ab_users(sidflow, warehouse, day)
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
            decision = decide(state, users, sidflow.params.serving)
            why = decision.reason
            if decision.promote:
                registry.promote(reason=f"A/B on {day}: {why}")
                actions.append(f"promoted candidate {state['candidate']['tag']}: {why}")
            else:
                actions.append(f"kept {state['promoted']['tag']} promoted: {why}")
            (wd.reports / "ab").mkdir(parents=True, exist_ok=True)
            record = {
                "day": day.isoformat(),
                "candidate": (state.get("candidate") or {}).get("tag"),
                "promoted": state["promoted"]["tag"],
                **decision.to_json(),
            }
            write_text_atomic(
                json.dumps(record, indent=2, default=str), wd.reports / "ab" / f"day={day}.json"
            )
            if registry.current()["promoted"]["tag"] != tag:
                registry.set_candidate(version)
                actions.append(f"candidate {tag} (treatment bucket)")
        final = registry.current()
        return dg.MaterializeResult(
            metadata={
                "promoted": (final.get("promoted") or {}).get("tag", "none"),
                "candidate": (final.get("candidate") or {}).get("tag", "none"),
                "actions": dg.MetadataValue.json(actions),
                "ab_evidence": dg.MetadataValue.json(
                    [] if users.empty else arm_summary(users).to_dict("records")
                ),
                "registry": dg.MetadataValue.path(str(wd.registry)),
            }
        )

    return [bento_bundle, promotion]
