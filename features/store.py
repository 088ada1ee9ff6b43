"""The feature store API other stages use: Feast configured from params.yaml.

- `feature_store(params)`          the Feast `FeatureStore` of the working folder
- `apply(params)`                  register entities, views and services (`feast apply`)
- `materialize_day(params, day)`   bring the online store up to the end of day d
- `training_frame(params, rows)`   point-in-time-correct features of (user, item, timestamp) rows
- `OnlineFeatures(params).get(user_id, item_ids)`  the same features online, one user x candidates
- `item_weights(params, as_of)`    item exposure weights for the SID builder (UniRec §3.2)

A candidate item's u2i cross features (DIG §3.1) are looked up through the item's own
cat_l2, cat_l3, brand and seller (from the warehouse `items` table). Recency is the on-demand
feature view `user_recency` (repo.py), computed by Feast offline and by its own transform
online. Only public Feast calls: `FeatureStore`, `get_provider(config)` and the provider's
`online_read` / online store (the SQLite store's batched reads are sidflow's own,
features/online_sqlite.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from feast import FeatureStore, FeatureView, OnDemandFeatureView, RepoConfig
from feast.infra.provider import get_provider
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from google.protobuf.message import DecodeError

from features.definitions import build_repo
from features.feast_internals import sqlite_db_path
from features.online_sqlite import BatchedSqliteOnlineStore, string_entity_keys
from features.schema import REQUEST_TS, TIMESTAMP, U2I_ATTRIBUTES, end_of_day, view_specs
from ingestion.warehouse import Warehouse
from sidflow.atomic import set_aside
from sidflow.config import Params
from sidflow.workdir import Workdir

# ibis (inside Feast's duckdb offline store) calls a DuckDB API that DuckDB 1.5 deprecates.
warnings.filterwarnings("ignore", message="fetch_arrow_table", category=DeprecationWarning)

REPO_DIR = Path(__file__).resolve().parent / "feature_repo"
# feature_store.yaml of each (online store, registry): the shell's `feast -f ...` uses the same
PROFILES = {
    ("sqlite", "file"): "feature_store.yaml",
    ("redis", "file"): "feature_store.redis.yaml",
    ("redis", "sql"): "feature_store.deployment.yaml",
}
MISSING_KEY = "<none>"  # join key of an item without brand/seller: matches no feature row


def repo_config(params: Params) -> RepoConfig:
    """The profile's feature_store.yaml with this working folder, Redis address and registry
    URL filled in. A (sqlite, sql) pair, which no yaml ships, is the SQLite store's yaml with the
    deployment yaml's SQL registry."""
    fp = params.features
    wd = Workdir(params.workdir)
    wd.feast_dir  # noqa: B018 - creates the folder
    names = {
        "SIDFLOW_WORKDIR": str(wd.root.resolve()),
        "SIDFLOW_REDIS_ADDRESS": fp.redis_address,
        "SIDFLOW_FEAST_REGISTRY_URL": fp.registry_url,
    }

    def read(name: str) -> dict:
        text = (REPO_DIR / name).read_text()
        for var, value in names.items():
            text = text.replace("${" + var + "}", value)
        return yaml.safe_load(text)

    raw = read(PROFILES.get((fp.online_store, fp.registry), PROFILES[(fp.online_store, "file")]))
    if fp.registry == "sql":
        raw["registry"] = read(PROFILES[("redis", "sql")])["registry"]
    elif fp.registry_path is not None:  # a shared registry file (serving replicas)
        Path(fp.registry_path).parent.mkdir(parents=True, exist_ok=True)
        raw["registry"]["path"] = str(fp.registry_path)
    config = RepoConfig(**raw)
    config.repo_path = REPO_DIR
    return config


def sqlite_online_path(params: Params) -> Path:
    """The SQLite online store file of the profile, as Feast resolves its configured `path`."""
    return sqlite_db_path(repo_config(params))


def feature_store(params: Params) -> FeatureStore:
    """Feast's FeatureStore for the working folder and online store profile in `params`."""
    config = repo_config(params)
    if config.registry.registry_type == "file":
        set_aside_cut_registry(Path(config.registry.path))
    return FeatureStore(config=config)


def set_aside_cut_registry(path: Path) -> None:
    """Move a registry file that does not parse to feast/interrupted/<UTC time>/.

    Feast writes registry.db in place: a process killed mid-write leaves it cut short, and every
    later FeatureStore fails on it. `apply` declares all its objects again; only the materialized
    intervals are lost, and `materialize_day` then loads the TTL window again (same rows).
    """
    if not path.exists():
        return
    try:
        RegistryProto().ParseFromString(path.read_bytes())
    except DecodeError as e:
        set_aside([path], path.parent, path.parent / "interrupted", f"does not parse ({e})")


def apply(params: Params, store: FeatureStore | None = None) -> dict:
    """Register every entity, source, view and service (what `feast apply` does); a summary."""
    store = store or feature_store(params)
    wd = Workdir(params.workdir)
    repo = build_repo(wd.features_dir, params.features)
    for name in repo.views:  # sources are folders; they exist before the first table is written
        (wd.features_dir / name).mkdir(parents=True, exist_ok=True)
    store.apply(repo.objects())
    return {
        "project": store.project,
        "registry": str(store.config.registry.path),
        "online_store": store.config.online_store.type,
        "entities": sorted(repo.entities),
        "feature_views": {n: len(v.features) for n, v in repo.views.items()},
        "on_demand_feature_views": {n: len(v.features) for n, v in repo.on_demand.items()},
        "feature_services": {
            n: sorted(p.name for p in s.feature_view_projections) for n, s in repo.services.items()
        },
    }


def materialize_day(params: Params, day: dt.date, store: FeatureStore | None = None) -> dict:
    """Bring the online store up to the end of day d, as `feast materialize-incremental` does.

    The range starts at the last materialized end, so catching up several days loads each
    key's latest row once (the data-only catch-up job leaves the online store alone); a fresh
    store starts at end of day d minus the longest TTL (older rows have expired). If a later
    day is already online, day d's rows are re-read through that later end, so re-running an
    old day never rolls the online store back: materializing a day twice changes nothing.
    """
    store = store or feature_store(params)
    day_end = end_of_day(day)
    views = [store.get_feature_view(n) for n in view_specs(params.features)]
    ends = [
        v.most_recent_end_time.astimezone(dt.UTC)
        for v in views
        if v.most_recent_end_time is not None
    ]
    if len(ends) < len(views):  # a view never materialized: everything within the TTL
        start = day_end - dt.timedelta(days=max(params.features.ttl_days.values()))
    else:
        start = min(min(ends), day_end)
    end = max([day_end, *ends])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars
        store.materialize(start_date=start, end_date=end)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def item_attributes(params: Params) -> pd.DataFrame:
    """item_id -> cat_l2, cat_l3, brand, seller from the warehouse (keys of the u2i lookups)."""
    wh = Warehouse(Workdir(params.workdir).warehouse)
    return wh.query(f"SELECT item_id, {', '.join(U2I_ATTRIBUTES)} FROM items")


def _with_keys(rows: pd.DataFrame, attrs: pd.DataFrame) -> pd.DataFrame:
    keys = attrs[["item_id", *U2I_ATTRIBUTES]]
    out = rows.drop(columns=[a for a in U2I_ATTRIBUTES if a in rows]).merge(keys, "left", "item_id")
    for a in U2I_ATTRIBUTES:
        out[a] = out[a].fillna(MISSING_KEY).astype(str)
    return out


def training_frame(
    params: Params,
    rows: pd.DataFrame,
    service: str = "ranker",
    store: FeatureStore | None = None,
    attrs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Point-in-time-correct features for rows (user_id, item_id, event_timestamp, ...).

    Each row gets the latest feature rows stamped at or before its event_timestamp (and within
    the view's TTL): a request during day d+1 sees the rows of day d, never day d+1's events.
    On-demand views (recency) see the row's event_timestamp as the request time. Extra columns
    (labels) are kept; the row order is preserved. Missing values are NaN.
    """
    missing = {"user_id", "item_id", TIMESTAMP} - set(rows.columns)
    if missing:
        raise ValueError(f"training_frame: rows lack column(s) {sorted(missing)}")
    store = store or feature_store(params)
    attrs = item_attributes(params) if attrs is None else attrs
    entity_df = _with_keys(rows.reset_index(drop=True), attrs)
    entity_df[TIMESTAMP] = pd.to_datetime(entity_df[TIMESTAMP], utc=True)
    entity_df[REQUEST_TS] = entity_df[TIMESTAMP]  # the request time of on-demand views
    entity_df["_row"] = np.arange(len(entity_df))
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(service)
    )
    out = job.to_df().sort_values("_row").drop(columns=["_row", REQUEST_TS])
    out = out.reset_index(drop=True)
    for a in U2I_ATTRIBUTES:
        out[a] = out[a].replace(MISSING_KEY, None)
    return out


class OnlineFeatures:
    """Online features of one user x candidate items: the serving path (goal p99 <= 10 ms).

    Reads the Feast online store (SQLite or Redis) through the provider of the store's config
    (`feast.infra.provider.get_provider`): per request, the user's `user_stats` row and the
    user's u2i rows for the distinct cat_l2 / cat_l3 / brand / seller of the candidates, then
    the service's on-demand views (recency) through their own transform. Item features are the
    same for every user, so they are read for the whole catalogue at start and again every
    `item_refresh_s` seconds (or on `refresh()`). The columns and values are those of
    `training_frame` for a request after the last materialized day. (Feast's
    `get_online_features` gives the same frame, ~40x slower: benchmarks/features.py.)
    """

    def __init__(
        self,
        params: Params,
        service: str = "ranker",
        attrs: pd.DataFrame | None = None,
        item_refresh_s: float = 300.0,
    ):
        self.store = feature_store(params)
        self._provider = get_provider(self.store.config)  # Feast's online read path, per view
        projections = self.store.get_feature_service(service).feature_view_projections
        on_demand = {v.name: v for v in self.store.list_on_demand_feature_views()}
        self._views = [
            (self.store.get_feature_view(p.name), [f.name for f in p.features])
            for p in projections
            if p.name not in on_demand
        ]
        self._on_demand = [on_demand[p.name] for p in projections if p.name in on_demand]
        for odfv in self._on_demand:  # request-level: the user's row and the request time
            sources = set(odfv.source_feature_view_projections)
            if not sources <= {"user_stats"}:
                raise ValueError(f"on-demand view {odfv.name} reads {sources}, not user_stats")
        self._kinds = {
            f.name: f.kind for s in view_specs(params.features).values() for f in s.features
        }
        attrs = item_attributes(params) if attrs is None else attrs
        keyed = _with_keys(attrs[["item_id"]], attrs)
        self._attrs = {
            a: dict(zip(keyed["item_id"], keyed[a], strict=True)) for a in U2I_ATTRIBUTES
        }
        self._catalogue = keyed["item_id"].tolist()
        self.item_refresh_s = item_refresh_s
        self._item_index: dict[str, int] = {}  # item_id -> row of the item_stats table
        self._item_table = np.empty((0, 0))  # [items + 1, item features]; last row: unknown
        self._item_stamps = np.empty(0)  # [items + 1] row times (epoch s)
        self._items_loaded = -np.inf

    def _read(
        self,
        view: FeatureView,
        join_keys: list[str],
        rows: list[list[str]],
        names: list[str],
        user_id: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values [len(rows), len(names)] and row times [len(rows)] (epoch s) of `view`'s keys
        (`user_id`: every row's user, for the SQLite store's key index)."""
        out = np.full((len(rows), len(names)), np.nan)
        stamps = np.full(len(rows), np.nan)
        if not rows:
            return out, stamps
        online = self._provider.online_store
        if isinstance(online, BatchedSqliteOnlineStore):  # keys serialized in one pass
            found = online.read_serialized(
                self.store.config, view, string_entity_keys(join_keys, rows), user_id
            )
        else:
            keys = []
            for values in rows:
                key = EntityKeyProto(join_keys=join_keys)
                for v in values:
                    key.entity_values.add().string_val = v
                keys.append(key)
            found = self._provider.online_read(self.store.config, view, keys)
        for i, (ts, values) in enumerate(found):
            if values:
                out[i] = [_number(values.get(n)) for n in names]
                stamps[i] = ts.timestamp()
        return out, stamps

    def _expire(self, view: FeatureView, block: np.ndarray, stamps: np.ndarray, now: float):
        """Blank rows older than the view's TTL, as the point-in-time join does offline."""
        block[now - stamps > view.ttl.total_seconds()] = np.nan
        return block

    def _user_stats(self, view: FeatureView, names: list[str], user_id: str, now: float):
        """The user's `user_stats` row ([1, features]), blank when older than the TTL."""
        row, stamp = self._read(view, ["user_id"], [[user_id]], names)
        return self._expire(view, row, stamp, now)

    def refresh(self) -> None:
        """Reload the item features of the whole catalogue from the online store."""
        for view, names in self._views:
            if view.name == "item_stats":
                ids = self._catalogue
                batches = [
                    self._read(view, ["item_id"], [[i] for i in ids[k : k + 1000]], names)
                    for k in range(0, len(ids), 1000)
                ]
                self._item_index = {item: k for k, item in enumerate(ids)}
                self._item_table = np.vstack(
                    [*(b[0] for b in batches), np.full(len(names), np.nan)]
                )
                self._item_stamps = np.concatenate([*(b[1] for b in batches), [np.nan]])
        self._items_loaded = time.monotonic()

    def get(
        self, user_id: str, item_ids: list[str], request_ts: dt.datetime | None = None
    ) -> pd.DataFrame:
        """One row per candidate, in order: keys, features, and recency at `request_ts`."""
        if time.monotonic() - self._items_loaded > self.item_refresh_s:
            self.refresh()
        n = len(item_ids)
        now = (request_ts or dt.datetime.now(dt.UTC)).timestamp()
        keys = {a: [self._attrs[a].get(i, MISSING_KEY) for i in item_ids] for a in U2I_ATTRIBUTES}
        blocks, names_out, user_row = [], [], {}
        for view, names in self._views:
            if view.name == "item_stats":
                unknown = len(self._item_index)
                at = [self._item_index.get(i, unknown) for i in item_ids]
                block = self._expire(view, self._item_table[at], self._item_stamps[at], now)
            elif view.name == "user_stats":
                row = self._user_stats(view, names, user_id, now)
                user_row = dict(zip(names, row[0], strict=True))
                block = np.repeat(row, n, axis=0)
            else:  # u2i: read each distinct attribute value once, then spread over candidates
                attr = view.name.removeprefix("user_")
                values = sorted(set(keys[attr]) - {MISSING_KEY})
                rows, stamps = self._read(
                    view, ["user_id", attr], [[user_id, v] for v in values], names, user_id
                )
                rows = np.vstack(
                    [self._expire(view, rows, stamps, now), np.full(len(names), np.nan)]
                )
                lookup = {v: k for k, v in enumerate(values)}  # absent -> last row (no value)
                block = rows[[lookup.get(v, len(values)) for v in keys[attr]]]
            blocks.append(block)
            names_out += names
        matrix = np.hstack(blocks) if blocks else np.empty((n, 0))  # [n, features]
        head = {"user_id": [user_id] * n, "item_id": list(item_ids)}
        head |= {a: [None if v == MISSING_KEY else v for v in keys[a]] for a in U2I_ATTRIBUTES}
        numeric = [j for j, f in enumerate(names_out) if self._kinds[f] != "timestamp"]
        parts = [
            pd.DataFrame(head),
            pd.DataFrame(matrix[:, numeric], columns=[names_out[j] for j in numeric]),
        ]
        stamps = {
            name: _epoch_seconds_to_utc(matrix[:, j])
            for j, name in enumerate(names_out)
            if self._kinds[name] == "timestamp"
        }
        parts.append(pd.DataFrame(stamps))
        for odfv in self._on_demand:  # one row (the user's), spread over the candidates
            values = self._on_demand_row(odfv, user_row, now)
            parts.append(pd.DataFrame({k: np.full(n, v, dtype=float) for k, v in values.items()}))
        return pd.concat(parts, axis=1)

    def user_features(self, user_id: str, request_ts: dt.datetime | None = None) -> pd.DataFrame:
        """One row: the user's `user_stats` features and the on-demand (recency) features at
        `request_ts`, as `get` gives them for every candidate, without the item and u2i reads
        (the DIG bucket's retrieval needs the user side before it has candidates)."""
        now = (request_ts or dt.datetime.now(dt.UTC)).timestamp()
        row: dict = {"user_id": user_id}
        for view, names in self._views:
            if view.name == "user_stats":
                row |= dict(zip(names, self._user_stats(view, names, user_id, now)[0], strict=True))
        numeric = {k: v for k, v in row.items() if k == "user_id" or self._kinds[k] != "timestamp"}
        for odfv in self._on_demand:
            numeric |= self._on_demand_row(odfv, row, now)
        return pd.DataFrame([numeric])

    @staticmethod
    def _on_demand_row(odfv: OnDemandFeatureView, user_row: dict, now: float) -> dict:
        """An on-demand view's features for the request: its transform (Feast's public
        `transform_dict`) over the user's row and the request time."""
        inputs = {REQUEST_TS: [dt.datetime.fromtimestamp(now, dt.UTC)]}
        for projection in odfv.source_feature_view_projections.values():
            for f in projection.features:
                x = user_row.get(f.name, np.nan)
                inputs[f.name] = [None if np.isnan(x) else dt.datetime.fromtimestamp(x, dt.UTC)]
        out = odfv.transform_dict(inputs)
        return {f.name: np.nan if out[f.name][0] is None else out[f.name][0] for f in odfv.features}


def _epoch_seconds_to_utc(seconds: np.ndarray) -> pd.Series:
    """float epoch seconds (NaN = null) -> datetime64[ns, UTC]."""
    out = np.full(len(seconds), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = ~np.isnan(seconds)
    out[ok] = seconds[ok].astype("int64").astype("datetime64[s]")
    return pd.Series(out).dt.tz_localize("UTC")


def _number(value: ValueProto | None) -> float:
    """A Feast ValueProto as a float (timestamps in epoch seconds); NaN when null or absent."""
    kind = value.WhichOneof("val") if value is not None else None
    if kind is None:
        return np.nan
    x = getattr(value, kind)
    if kind == "unix_timestamp_val" and x == NULL_TIMESTAMP_INT_VALUE:
        return np.nan
    return float(x)


def item_weights(params: Params, as_of: dt.date, store: FeatureStore | None = None) -> pd.Series:
    """Exposure weight of every catalogue item as of the end of day `as_of` (UniRec §3.2).

    Weight = the item's exposures over the largest window (`features.windows_days[-1]`) read
    through the `sid_weights` feature service; for a source without exposures (Amazon reviews)
    it is the item's interactions (clicks + carts + purchases) instead. Items without events in
    the window weigh 0. Returns a float Series indexed by item_id, named after its basis.
    """
    wd = Workdir(params.workdir)
    if not wd.feature_table_path("item_stats", as_of).exists():
        raise FileNotFoundError(
            f"item_weights: no item_stats table for {as_of} in {wd.features_dir}; compute it "
            f"first (`sidflow features --day {as_of}` or the feature_tables asset)"
        )
    store = store or feature_store(params)
    wh = Warehouse(wd.warehouse)
    items = wh.query("SELECT item_id FROM items WHERE first_seen <= ? ORDER BY item_id", [as_of])
    entity_df = items.assign(**{TIMESTAMP: end_of_day(as_of)})
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("sid_weights")
    ).to_df()
    frame = frame.set_index("item_id").reindex(items["item_id"])
    w = params.features.windows_days[-1]
    exposures = frame[f"item_exposures_{w}d"]
    if exposures.notna().any():
        weights, basis = exposures, f"exposures_{w}d"
    else:
        cols = [f"item_{c}_{w}d" for c in ("clicks", "carts", "purchases")]
        weights, basis = frame[cols].sum(axis=1, min_count=1), f"interactions_{w}d"
    return weights.fillna(0.0).astype("float64").rename(basis)
