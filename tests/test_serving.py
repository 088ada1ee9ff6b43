"""The BentoML service, for real: `bentoml serve` in a subprocess on 127.0.0.1.

One tiny world is run through the daily pipeline once (data job for the first days, the whole
graph on the last), which gates, bundles and promotes a model; the service then serves it.
"""

import concurrent.futures as cf
import dataclasses
import datetime as dt
import json
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from data_contracts.runner import validate_table
from ingestion.warehouse import Warehouse
from serving import ab, launch
from serving.bundle import BundleManifest, bundle_path, read_manifest, save_bundle
from serving.exposure_log import land_day, read_day
from serving.recommender import Request
from sidflow.config import ServingParams, load_params
from sidflow.registry import Registry
from sidflow.workdir import Workdir

QA_TOKEN = "qa-secret-for-tests"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_graph):
    """A trained + promoted tiny bundle and a running `bentoml serve` on a free port."""
    root = tmp_path_factory.mktemp("serving")
    _, params_file = tiny_graph
    env_before = os.environ.get("SIDFLOW_WORKDIR")
    os.environ.pop("SIDFLOW_WORKDIR", None)
    params = load_params(params_file)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SIDFLOW_PARAMS": str(params_file),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIDFLOW_QA_TOKEN": QA_TOKEN,
        "BENTOML_HOME": str(root / "bentoml-home"),
    }
    log = open(root / "serve.log", "w")  # noqa: SIM115 - closed after the server stops
    proc = launch.start(port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        launch.wait_ready(url, proc)
    except RuntimeError as err:
        proc.kill()
        pytest.fail(f"{err}: {(root / 'serve.log').read_text()[-2000:]}")
    yield url, params, root / "serve.log"
    proc.terminate()
    proc.wait(20)
    log.close()
    if env_before is not None:
        os.environ["SIDFLOW_WORKDIR"] = env_before


def _post(url: str, body: object, **kw) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30, **kw)


def test_recommendations_come_from_the_catalogue(served):
    url, params, _ = served
    catalogue = set(
        pd.read_parquet(
            Workdir(params.workdir).raw_dir("items", params.world.days()[-1]) / "world.parquet"
        )["item_id"]
    )
    users = [f"u{i:07d}" for i in range(12)] + ["someone-new"]
    for user in users:
        r = _post(url, {"user_id": user, "scene": "feed", "k": 8})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) == 8 and {i["item_id"] for i in body["items"]} <= catalogue
        assert body["bucket"] in {"control", "treatment"} and body["request_id"]
        assert body["model"].startswith("sidflow-recommender:")
        timing = dict(p.strip().split(";", 1) for p in r.headers["server-timing"].split(","))
        assert {"queue", "handle", "api", "batch"} <= set(timing)
        handle, api = (float(timing[k].removeprefix("dur=")) for k in ("handle", "api"))
        assert 0 < handle <= api  # the batched pass is part of the handler's time
    assert _post(url, {"user_id": "someone-new", "scene": "search", "k": 3}).json()["fallback"]
    meta = httpx.post(f"{url}/metadata", json={}, timeout=10).json()
    assert meta["promoted"]["sid_version"].startswith("sid-")
    assert meta["torch_threads"] == params.serving.torch_threads  # set in the worker


def test_the_bundle_holds_the_ranker_and_a_bento_was_built(served):
    from serving.build import bento_manifest

    url, params, _ = served
    stages = {
        _post(url, {"user_id": f"u{i:07d}", "scene": "feed", "k": 5}).json()["stage"]
        for i in range(20)
    }
    assert "ranker" in stages  # known users: beam search, then the ranker on online features
    wd = Workdir(params.workdir)
    [report] = sorted((wd.reports / "bundles").glob("day=*.json"))
    bundle = json.loads(report.read_text())
    assert bundle["parts"] == ["ranker", "retriever"]
    folder = bundle_path(wd.root, bundle["tag"])
    assert (folder / "ranker" / "ranker.safetensors").exists()
    assert {"rank_auc", "auc_gap"} <= set(bundle["metrics"]["ranker"])
    bento = bento_manifest(Path(bundle["bento"]["path"]))
    assert bento["service"] == "serving.service:Sidflow"
    assert [m["tag"] for m in bento["models"]] == [bundle["tag"]]
    assert (Path(bundle["bento"]["path"]) / "src" / "serving" / "service.py").exists()


def test_nearline_candidates_answer_known_users_and_others_run_live(served):
    url, params, _ = served
    wd = Workdir(params.workdir)
    [report] = sorted((wd.reports / "bundles").glob("day=*.json"))
    folder = bundle_path(wd.root, json.loads(report.read_text())["tag"])
    table = pd.read_parquet(folder / "candidates.parquet")
    assert (
        set(table["scene"]) == set(params.data.scenes)
        and table["rows"].map(len).eq(params.serving.beam_size).all()
    )
    user = table["user_id"].iloc[0]
    paths = {
        (b["candidates"], b["stage"])
        for b in (
            _post(url, {"user_id": user, "scene": "feed", "k": 5}).json(),
            _post(url, {"user_id": user, "scene": "feed", "k": 5, "history": ["i0000001"]}).json(),
            _post(url, {"user_id": "someone-new", "scene": "feed", "k": 5}).json(),
        )
    }
    # the bundle's history: precomputed; a history of its own: live; unknown: fallback
    assert paths == {("nearline", "ranker"), ("live", "ranker"), ("", "popularity")}
    log = read_day(wd.exposure_logs, dt.datetime.now(dt.UTC).date())
    assert {"nearline", "live"} <= set(log["candidates"])  # the log says which path served


def test_nearline_lists_equal_the_live_lists(served):
    """The quality check: for the same input, the list served from the precomputed candidates
    is the live path's (beam search one request at a time, then the same ranker)."""
    from features.store import OnlineFeatures
    from serving.recommender import Recommender

    _, params, _ = served
    wd = Workdir(params.workdir)
    tag = Registry(wd.registry).current()["promoted"]["tag"]
    rec = Recommender(bundle_path(wd.root, tag), beam_size=params.serving.beam_size)
    rec.online = OnlineFeatures(params)
    assert rec.nearline is not None and len(rec.nearline) > 0
    users = sorted({u for u, _ in rec.nearline._by})[:25]
    reqs = [Request(u, s, 10) for u in users for s in params.data.scenes]
    near = rec.recommend(reqs)  # one batch, every request precomputed
    keep, rec.nearline = rec.nearline, None
    live = [rec.recommend([r])[0] for r in reqs]
    rec.nearline = keep
    assert {a.candidates for a in near} == {"nearline"} and {b.candidates for b in live} == {"live"}
    for a, b in zip(near, live, strict=True):
        assert a.items == b.items
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


def test_a_dig_bucket_retrieves_with_the_ranker(served):
    """A bucket with `retriever: dig` serves the bundle's DIG ranker as retriever (dig §3.4):
    its lists are the plain reference beam search over the ranker's SIDs, ranked by the
    ranker; the other bucket of the same bundle keeps UniRec's candidates."""
    from models.ranker.retrieval import reference_ranker_beam_search
    from serving.router import ServingApp
    from sidflow.config import BucketParams

    _, params, _ = served
    buckets = [
        BucketParams(name="control", share=0.5, model="promoted"),
        BucketParams(name="dig", share=0.5, model="promoted", retriever="dig"),
    ]
    app = ServingApp(
        params.model_copy(
            update={"serving": params.serving.model_copy(update={"buckets": buckets})}
        ),
        log=False,
    )
    rec = app.bundle(app.version_for("promoted")["tag"])
    users = sorted(rec._history)[:4]
    scenes = params.data.scenes
    reqs = [Request(u, scenes[j % len(scenes)], 10) for j, u in enumerate(users)]
    dig = app.handle(reqs, buckets=["dig"] * len(reqs))
    unirec = app.handle(reqs, buckets=["control"] * len(reqs))
    assert {(x.bucket, x.rec.candidates, x.rec.stage) for x in dig} == {("dig", "dig", "ranker")}
    assert {x.rec.candidates for x in unirec} <= {"nearline", "live"}
    assert [x.rec.items for x in dig] != [x.rec.items for x in unirec]  # another retriever
    ranker, width = rec.ranker, params.serving.beam_size
    for req, got in zip(reqs, dig, strict=True):
        user = ranker.user_side(req.user_id, rec.history(req), req.scene)
        row = rec.online.get(req.user_id, [rec._popular_all[0]])
        batch = {
            "profile": user.profile,
            "scene": user.scene,
            "user_dense": torch.from_numpy(ranker.enc.dense(row, ranker.enc.user_cols)),
            "hist": user.hist,
        }
        [found] = reference_ranker_beam_search(
            ranker.model, batch, ranker.model.item_sids.numpy(), width
        )
        items = [ranker._item_ids[r] for r, _ in found][:width]
        s = ranker.score(user, items, rec.online.get(req.user_id, items))
        assert got.rec.items == [items[j] for j in np.argsort(-s, kind="stable")[:10]]


def test_buckets_are_sticky_and_near_their_shares(served):
    url, params, _ = served
    sp = params.serving
    first = {
        u: _post(url, {"user_id": u, "scene": "feed", "k": 1}).json()["bucket"]
        for u in (f"u{i:07d}" for i in range(20))
    }
    again = {
        u: _post(url, {"user_id": u, "scene": "search", "k": 1}).json()["bucket"] for u in first
    }
    assert first == again  # sticky across requests (and processes: the hash is stateless)
    assert first == {u: ab.assign(sp, u).name for u in first}
    counts = pd.Series([ab.assign(sp, f"user-{i}").name for i in range(20_000)]).value_counts()
    for b in sp.buckets:
        assert abs(counts[b.name] / 20_000 - b.share) < 0.01
    moved = ServingParams(salt="another-salt")
    assert any(ab.assign(moved, u).name != first[u] for u in first)


def test_qa_override_needs_the_token(served):
    url, _, _ = served
    body = {"user_id": "u0000001", "scene": "feed", "k": 2}
    ok = _post(url, body, headers={"x-sidflow-bucket": "treatment", "x-sidflow-qa-token": QA_TOKEN})
    assert ok.status_code == 200 and ok.json()["bucket"] == "treatment"
    bad = _post(url, body, headers={"x-sidflow-bucket": "treatment", "x-sidflow-qa-token": "no"})
    assert bad.status_code == 403


MALFORMED = [
    ({}, "user_id"),
    ({"user_id": "u1", "scene": "feed", "k": 0}, "k"),
    ({"user_id": "u1", "scene": "feed", "k": 10_000}, "k"),
    ({"user_id": "u1", "scene": "feed", "k": "ten"}, "k"),
    ({"user_id": "u1", "scene": "moon", "k": 5}, "scene"),
    ({"user_id": "", "scene": "feed"}, "user_id"),
    ({"user_id": "x" * 5000, "scene": "feed"}, "user_id"),
    ({"user_id": "u1; DROP TABLE", "scene": "feed"}, "user_id"),
    ({"user_id": "u1", "scene": "feed", "history": ["i1"] * 500}, "history"),
    ({"user_id": "u1", "scene": "feed", "history": "i1"}, "history"),
    ({"user_id": 12, "scene": "feed"}, "user_id"),
    ([1, 2, 3], None),
    ("not json at all", None),
]


@pytest.mark.parametrize(("body", "field"), MALFORMED)
def test_malformed_requests_get_4xx_naming_the_field(served, body, field):
    url, _, _ = served
    if isinstance(body, str):
        r = httpx.post(
            f"{url}/recommend",
            content=body,
            timeout=10,
            headers={"content-type": "application/json"},
        )
    else:
        r = _post(url, body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if field:
        assert field in r.text


def test_rejections_are_warning_lines_and_metrics_are_on_the_metrics_endpoint(served):
    """After the malformed requests above: each 400 is one WARNING line naming the field and
    the reason, with no traceback; /metrics counts requests, errors, latency, fallbacks and
    beam batch sizes per bucket and model."""
    url, _, log_path = served
    assert _post(url, {"user_id": "u1; DROP TABLE", "scene": "feed"}).status_code == 400
    for i in range(6):
        assert _post(url, {"user_id": f"u{i:07d}", "scene": "feed", "k": 3}).status_code == 200
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    time.sleep(0.5)  # the worker's log lines reach the file
    log = log_path.read_text()
    assert "Traceback" not in log and "ValidationError" not in log
    rejected = [line for line in log.splitlines() if "rejected request POST /recommend" in line]
    assert any("user_id: String should match pattern" in line for line in rejected), log[-3000:]
    assert all("WARNING" in line for line in rejected)
    assert 'sidflow_request_errors_total{bucket="-",model="-",status="400"}' in metrics
    assert 'sidflow_requests_total{bucket="control",model="' in metrics
    for name in ("sidflow_request_latency_seconds_bucket", "sidflow_beam_batch_size_bucket"):
        assert name in metrics, metrics[-2000:]
    assert "bentoml_service_request_total" in metrics  # BentoML's own metrics stay


def test_logs_round_trip_through_ingestion(served):
    url, params, _ = served
    wd = Workdir.of(params)
    ids = [
        _post(url, {"user_id": f"u{i:07d}", "scene": "similar", "k": 4}).json()["request_id"]
        for i in range(5)
    ]
    today = dt.datetime.now(dt.UTC).date()
    log = read_day(wd.exposure_logs, today)
    assert set(ids) <= set(log["request_id"])
    assert (log[log["request_id"].isin(ids)].groupby("request_id")["position"].max() == 3).all()
    landed = land_day(wd.exposure_logs, wd.root / "roundtrip", today)
    report = validate_table("events", [landed], wd.gx_root, day=today, main=landed)
    assert len(report.valid) == len(log) and report.quarantined_rows == 0
    assert set(report.valid["event_type"]) == {"exposure"}


def test_a_model_swap_under_load_loses_no_request(served):
    url, params, _ = served
    wd = Workdir.of(params)
    registry = Registry(wd.registry)
    before = registry.current()["promoted"]
    # a second bundle in the model store: same models, another manifest -> another tag
    folder = bundle_path(wd.root, before["tag"])
    tables = {
        t: pd.read_parquet(folder / f"{t}.parquet")
        for t in ("catalogue", "users", "histories", "popularity")
    }
    manifest = BundleManifest.from_json(read_manifest(wd.root, before["tag"]))
    manifest = dataclasses.replace(manifest, window=manifest.window + " (swap test)")
    day = dt.date.fromisoformat(manifest.day)
    tag = save_bundle(wd.root, day, {"retriever": folder / "retriever"}, tables, manifest)
    assert tag != before["tag"]

    def call(i: int) -> tuple[int, str]:
        r = _post(url, {"user_id": f"u{i % 150:07d}", "scene": "feed", "k": 5})
        return r.status_code, r.json().get("model", "")

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call, i) for i in range(200)]
        time.sleep(0.3)
        registry.promote({"tag": tag, **manifest.to_json()}, reason="swap under load (test)")
        results = [f.result() for f in futures]
        after = [pool.submit(call, i).result() for i in range(8)]
    assert [s for s, _ in results + after] == [200] * (len(results) + len(after))
    assert {m for _, m in results} <= {before["tag"], tag}
    assert {m for _, m in after} == {tag}  # every request after the swap uses the new bundle
    registry.rollback()
    assert registry.current()["promoted"]["tag"] == before["tag"]


def test_closed_loop_simulation_serves_ingests_and_reports(served):
    from lifecycle.closed_loop.simulate import (
        SERVED_BATCH,
        STATUS_QUO,
        STATUS_QUO_BATCH,
        simulate,
    )

    _, params, _ = served
    result = simulate(params, {})
    [day] = result["days"]
    assert result["bootstrap"] == []  # a model was already promoted
    wd = Workdir.of(params)
    served_day = dt.date.fromisoformat(day["day"])
    assert served_day == params.world.days()[-1] + dt.timedelta(days=1)
    assert (wd.raw_dir("events", served_day) / SERVED_BATCH).exists()
    buckets = {b["bucket"]: b for b in day["buckets"]}
    assert set(buckets) <= {"control", "treatment", STATUS_QUO} and STATUS_QUO in buckets
    assert sum(b["requests"] for k, b in buckets.items() if k != STATUS_QUO) == len(
        read_day(wd.exposure_logs, served_day)["request_id"].unique()
    )
    assert (wd.raw_dir("events", served_day) / STATUS_QUO_BATCH).exists()
    exposures = (
        Warehouse(wd.warehouse)
        .query(
            "SELECT count(*) AS n FROM events WHERE day = ? AND event_type = 'exposure'",
            [served_day],
        )["n"]
        .iloc[0]
    )
    # the exposure log and the status quo's exposures were ingested
    assert exposures == sum(b["exposures"] for b in buckets.values())
    # lifts with intervals over users: the model arms against control and the status quo
    pairs = {(c["arm"], c["reference"], c["metric"]) for c in day["lifts"]}
    assert ("control", STATUS_QUO, "ctr") in pairs
    # (a tiny day: a metric with no purchase in the reference arm has no finite lift)
    finite = [
        c for c in day["lifts"] if np.isfinite([c["lift_low"], c["lift"], c["lift_high"]]).all()
    ]
    assert finite and all(c["lift_low"] <= c["lift"] <= c["lift_high"] for c in finite)
    assert set(day["srm"]["expected"]) == set(buckets)
    md = Path(result["paths"]["md"]).read_text()
    assert md.count(day["day"]) >= 2 and "control vs status_quo" in md and "SRM" in md
    assert Path(result["paths"]["lifts"]).exists()
