"""The serving application: A/B bucket -> the bucket's bundle and retriever -> recommend ->
exposure log.

`ServingApp` is what `bentoml serve` runs (serving/service.py wraps it in HTTP) and what the
closed-loop simulation calls in-process, so both go through the same code. It watches the
registry file: when a new version is promoted, the next batch is served by it; requests in
flight finish on the bundle they started with (no request is dropped by a swap).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pandas as pd

from serving import ab
from serving.bundle import find_bundle
from serving.exposure_log import append, exposure_rows
from serving.recommender import Recommendation, Recommender, Request, Served
from sidflow.config import Params
from sidflow.registry import Registry, serving_version
from sidflow.workdir import Workdir


class NoModelError(RuntimeError):
    """Nothing is promoted yet: the service is not ready."""


class ServingApp:
    """Buckets, bundles by tag (cached), online features and the exposure log."""

    def __init__(self, params: Params, log: bool = True):
        self.params = params
        self.sp = params.serving
        self.wd = Workdir.of(params)
        self.registry = Registry(self.wd.registry)
        self.log = log
        self._lock = threading.Lock()
        self._bundles: dict[str, Recommender] = {}
        self._state_mtime = -1.0
        self._state: dict = {}
        self._prices: dict[str, float] = {}

    def _online_features(self, service: str, catalogue: pd.DataFrame):  # noqa: ANN202
        """A Feast online store reader of a feature service over a bundle's catalogue (only
        needed when the bundle holds a ranker). The u2i lookup keys of the items come from the
        catalogue, so a replica needs the online store and the feature registry, not the
        warehouse; each bundle gets its own reader (a newer bundle has newer items)."""
        # Feast is a heavy import, needed only when a bundle holds a ranker
        from features.schema import U2I_ATTRIBUTES
        from features.store import OnlineFeatures

        attrs = catalogue[["item_id", *U2I_ATTRIBUTES]]
        return OnlineFeatures(self.params, service, attrs)

    def state(self) -> dict:
        """The registry, re-read when its file changed (the hot swap)."""
        path = self.registry.path
        mtime = path.stat().st_mtime if path.exists() else 0.0
        if mtime != self._state_mtime:
            with self._lock:
                self._state = self.registry.current()
                self._state_mtime = mtime
        return self._state

    def bundle(self, tag: str) -> Recommender:
        """The loaded bundle of `tag` (loaded once; the last few stay cached)."""
        with self._lock:
            rec = self._bundles.get(tag)
            if rec is None:
                store = self.sp.model_store_dir or self.wd.root / "bentoml" / "models"
                folder = find_bundle(tag, store)
                # the bundle decides: its near-line candidates answer whenever it carries them
                rec = Recommender(folder, beam_size=self.sp.beam_size)
                catalogue = pd.read_parquet(Path(folder) / "catalogue.parquet")
                if rec.ranker is not None:
                    service = rec.manifest.get("feature_service") or "ranker"
                    rec.online = self._online_features(service, catalogue)
                self._prices.update(zip(catalogue["item_id"], catalogue["price"], strict=True))
                self._bundles[tag] = rec
                for old in list(self._bundles)[:-3]:  # keep the newest three loaded
                    del self._bundles[old]
            return rec

    def version_for(self, bucket_model: str) -> dict:
        """The registry entry a bucket serves now."""
        version = serving_version(self.state(), bucket_model)
        if version is None:
            raise NoModelError("no model is promoted yet: run the daily pipeline first")
        return version

    def ready(self) -> bool:
        """True when a promoted bundle exists and loads."""
        try:
            self.bundle(self.version_for("promoted")["tag"])
            return True
        except (NoModelError, Exception):  # noqa: BLE001 - readiness is a yes/no answer
            return False

    def handle(
        self,
        requests: list[Request],
        ts: pd.Series | None = None,
        buckets: list[str | None] | None = None,
    ) -> list[Served]:
        """Answer a batch: group by bucket version, one recommend call per bundle, log all.

        `ts`: request times (default now); `buckets`: QA-forced bucket names (None = hashed).
        """
        now = pd.Timestamp.now(tz="UTC")
        times = list(ts) if ts is not None else [now] * len(requests)
        chosen = []
        for i, r in enumerate(requests):
            forced = buckets[i] if buckets else None
            b = next((x for x in self.sp.buckets if x.name == forced), None) if forced else None
            chosen.append(b or ab.assign(self.sp, r.user_id))
        by_path: dict[tuple[str, str], list[int]] = {}  # (bundle tag, retriever) -> requests
        tags = [self.version_for(b.model)["tag"] for b in chosen]
        for i, tag in enumerate(tags):
            by_path.setdefault((tag, chosen[i].retriever), []).append(i)
        recs: list[Recommendation | None] = [None] * len(requests)
        for (tag, retriever), idx in by_path.items():
            answers = self.bundle(tag).recommend([requests[i] for i in idx], retriever)
            for i, rec in zip(idx, answers, strict=True):
                recs[i] = rec
        served = [
            Served(
                f"q-{uuid.uuid4().hex[:16]}", r.user_id, r.scene, chosen[i].name, tags[i], recs[i]
            )
            for i, r in enumerate(requests)
        ]
        if self.log:
            append(self.wd.exposure_logs, exposure_rows(served, times, self._prices))
        return served
