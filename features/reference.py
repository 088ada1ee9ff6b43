"""Plain pandas reference of the feature tables: the same definitions as `features/sql/`.

Written for clarity, not speed: daily counts per key once, then, day by day, the window sums
of every key and the keys that changed that day. Tests check that the DuckDB SQL agrees with
it (hypothesis), and `benchmarks/features.py` times it against the SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.schema import TIMESTAMP, ViewSpec, view_specs
from sidflow.config import FeaturesParams

EVENT_TYPES = ("exposure", "click", "cart", "purchase")
EPOCH = dt.date(1970, 1, 1)
MEASURES = {"exposures": "exposure", "clicks": "click", "carts": "cart", "purchases": "purchase"}


def _daily(events: pd.DataFrame, keys: list[str], recency: bool) -> pd.DataFrame:
    """Per key and day: counts by event type, purchase value, priced purchases (, last times)."""
    ev = events.dropna(subset=keys)
    flags = {m: ev["event_type"] == t for m, t in MEASURES.items()}
    purchase = flags["purchases"]
    frame = ev[[*keys, "day"]].assign(
        **{m: f.astype("int64") for m, f in flags.items()},
        gmv=ev["price"].where(purchase, 0.0).fillna(0.0),
        priced_purchases=(purchase & ev["price"].notna()).astype("int64"),
    )
    agg = {m: "sum" for m in [*MEASURES, "gmv", "priced_purchases"]}
    if recency:
        seconds = ev["ts"].dt.floor("s")  # whole seconds, as Feast keeps them online
        frame = frame.assign(
            last_event_ts=seconds,
            last_interaction_ts=seconds.where(ev["event_type"] != "exposure"),
            last_purchase_ts=seconds.where(purchase),
        )
        agg |= {c: "max" for c in ("last_event_ts", "last_interaction_ts", "last_purchase_ts")}
    return frame.groupby([*keys, "day"], sort=False).agg(agg).reset_index()


def _smoothed(num: pd.Series, den: pd.Series, prior: float, m: float, ok: bool) -> pd.Series:
    # Posterior mean under Beta(m*p, m*(1-p)) (features/sql/day_context.sql).
    if not ok or prior is None or np.isnan(prior):
        return pd.Series(np.nan, index=num.index)
    return (num + m * prior) / (den + m)


def _day_numbers(days: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 of a date / datetime column (what DuckDB's DATE holds)."""
    return pd.to_datetime(days).to_numpy().astype("datetime64[D]").astype("int64")


def _view_rows(
    spec: ViewSpec, daily: pd.DataFrame, d: int, ctx: dict, fp: FeaturesParams
) -> pd.DataFrame:
    """The rows of one view for day number d: keys that changed on d, with their window stats."""
    keys, windows, m = list(spec.join_keys), fp.windows_days, fp.prior_strength
    w_max = windows[-1]
    changed_days = [d - o for o in (0, *windows)]
    changed = daily.loc[daily["day"].isin(changed_days), keys].drop_duplicates()
    recent = daily[(daily["day"] > d - w_max) & (daily["day"] <= d)]
    recent = changed.merge(recent, on=keys, how="left")
    out = changed.reset_index(drop=True)
    has = ctx["has"]
    prefix = {"item_stats": "item", "user_stats": "user"}.get(spec.name, f"u_{keys[-1]}")

    def window_sum(col: str, w: int) -> pd.Series:
        inside = recent["day"].notna() & (recent["day"] > d - w)
        summed = recent[col].where(inside, 0).groupby([recent[k] for k in keys]).sum()
        return out.merge(summed.rename("v").reset_index(), on=keys, how="left")["v"].fillna(0)

    for w in windows:
        sums = {c: window_sum(c, w) for c in ("exposures", "clicks", "carts", "purchases", "gmv")}
        names = ["exposures", "clicks"] + (["carts"] if spec.ttl_group != "u2i" else [])
        for c in [*names, "purchases"]:
            typ = MEASURES[c]
            out[f"{prefix}_{c}_{w}d"] = sums[c].astype("int64") if has[typ] else None
        if spec.name == "item_stats":
            out[f"item_gmv_{w}d"] = sums["gmv"].astype(float) if has["purchase"] else np.nan
        if spec.name != "user_stats":
            out[f"{prefix}_ctr_{w}d"] = _smoothed(
                sums["clicks"],
                sums["exposures"],
                ctx["ctr"][w],
                m,
                has["exposure"] and has["click"],
            )
            out[f"{prefix}_cvr_{w}d"] = _smoothed(
                sums["purchases"],
                sums["clicks"],
                ctx["cvr"][w],
                m,
                has["click"] and has["purchase"],
            )
    if spec.name == "user_stats":
        g = recent.groupby(keys)
        extra = pd.DataFrame(
            {
                f"user_active_days_{w_max}d": g["day"].count(),
                "value": g["gmv"].sum(),
                "priced": g["priced_purchases"].sum(),
                "user_last_event_ts": g["last_event_ts"].max(),
                "user_last_interaction_ts": g["last_interaction_ts"].max(),
                "user_last_purchase_ts": g["last_purchase_ts"].max(),
            }
        ).reset_index()
        out = out.merge(extra, on=keys, how="left")
        avg = out["value"] / out["priced"].where(out["priced"] > 0)
        out[f"user_avg_purchase_price_{w_max}d"] = avg if has["purchase"] else np.nan
        out = out.drop(columns=["value", "priced"])
    out[TIMESTAMP] = pd.Timestamp(EPOCH + dt.timedelta(days=d + 1), tz="UTC")
    return out


def _inputs(
    events: pd.DataFrame, items: pd.DataFrame, fp: FeaturesParams, first: int, last: int
) -> tuple[dict, pd.DataFrame, dict]:
    """First day of each event type, daily totals by type, and daily counts per view's keys."""
    events = events.assign(day=_day_numbers(events["day"]))
    events = events[events["day"] <= last]
    first_seen = {t: events.loc[events["event_type"] == t, "day"].min() for t in EVENT_TYPES}
    window = events[events["day"] >= first - fp.windows_days[-1]]
    attrs = items[["item_id", "cat_l2", "cat_l3", "brand", "seller"]]
    window = window.merge(attrs, on="item_id", how="left")
    totals = window.groupby("day")["event_type"].value_counts().unstack(fill_value=0)
    daily = {
        n: _daily(window, list(s.join_keys), n == "user_stats") for n, s in view_specs(fp).items()
    }
    return first_seen, totals, daily


def reference_feature_tables(
    events: pd.DataFrame,
    items: pd.DataFrame,
    fp: FeaturesParams,
    first_day: dt.date,
    last_day: dt.date,
    sink: Callable[[str, dt.date, pd.DataFrame], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every view's rows for days [first_day, last_day] from canonical events (with `day`).

    With `sink`, each (view, day, rows) is handed to it instead of being kept (large worlds),
    and the result is empty.
    """
    first, last = (first_day - EPOCH).days, (last_day - EPOCH).days
    first_seen, totals, daily = _inputs(events, items, fp, first, last)
    del events  # the caller may pass a temporary: let it go
    specs = view_specs(fp)
    out: dict[str, list[pd.DataFrame]] = {n: [] for n in specs}
    for d in range(first, last + 1):
        ctx: dict = {
            "has": {t: bool(pd.notna(f) and f <= d) for t, f in first_seen.items()},
            "ctr": {},
            "cvr": {},
        }
        for w in fp.windows_days:
            t = totals[(totals.index > d - w) & (totals.index <= d)]
            t = t.reindex(columns=list(EVENT_TYPES), fill_value=0).sum()
            ctx["ctr"][w] = t["click"] / t["exposure"] if t["exposure"] else np.nan
            ctx["cvr"][w] = t["purchase"] / t["click"] if t["click"] else np.nan
        for name, spec in specs.items():
            rows = _view_rows(spec, daily[name], d, ctx, fp)[spec.columns]
            if sink:
                sink(name, EPOCH + dt.timedelta(days=d), rows)
            else:
                out[name].append(rows)
    if sink:
        return {}
    result = {}
    for name, spec in specs.items():
        frame = pd.concat(out[name], ignore_index=True)
        result[name] = frame.sort_values([*spec.join_keys, TIMESTAMP]).reset_index(drop=True)
    return result
