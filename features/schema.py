"""Every feature view and feature: names, types and definitions (one source for SQL, Feast, docs).

Views (DIG §3.1, Table 1: the u2i cross features c_{u,v} are Type-III features):
- `item_stats`   item exposure stats (also the SID builder's exposure weights, UniRec §3.2)
- `user_stats`   request-level user features (Type-II)
- `user_cat_l2`, `user_cat_l3`, `user_brand`, `user_seller`: u2i cross stats of a user with
  a candidate item's category / brand / seller (DIG's Taobao set: per-category/brand CTR,
  impression and purchase counts).

Every windowed feature of day d aggregates events with day in (d-w, d]; the row carries
`event_timestamp` = end of day d (midnight UTC that starts d+1) and uses no later event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sidflow.config import FeaturesParams

U2I_ATTRIBUTES = ("cat_l2", "cat_l3", "brand", "seller")
ENTITY_KEYS = {"user": "user_id", "item": "item_id", **{a: a for a in U2I_ATTRIBUTES}}
TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: name, kind (int | float | timestamp), definition, source event type."""

    name: str
    kind: str
    definition: str
    needs: tuple[
        str, ...
    ] = ()  # event types that must exist in the source, else the feature is empty


@dataclass(frozen=True)
class ViewSpec:
    """One feature view: its entities' join keys, features, TTL group and description."""

    name: str
    join_keys: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    ttl_group: str  # key of `features.ttl_days`
    description: str

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in table order."""
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        """Parquet columns of the view's table: join keys, event_timestamp, features."""
        return [*self.join_keys, TIMESTAMP, *self.feature_names]


def _counts(prefix: str, w: int, who: str, with_carts: bool) -> list[FeatureSpec]:
    kinds = [("exposures", "exposure"), ("clicks", "click")]
    kinds += [("carts", "cart")] if with_carts else []
    kinds += [("purchases", "purchase")]
    return [
        FeatureSpec(
            f"{prefix}_{name}_{w}d", "int", f"{etype} events {who} in the last {w} day(s)", (etype,)
        )
        for name, etype in kinds
    ]


def _rates(prefix: str, w: int, m: float) -> list[FeatureSpec]:
    return [
        FeatureSpec(
            f"{prefix}_ctr_{w}d",
            "float",
            f"(clicks_{w}d + {m:g}*p) / (exposures_{w}d + {m:g}); p = global CTR over the window",
            ("exposure", "click"),
        ),
        FeatureSpec(
            f"{prefix}_cvr_{w}d",
            "float",
            f"(purchases_{w}d + {m:g}*q) / (clicks_{w}d + {m:g}); q = global purchases/clicks over the window",
            ("click", "purchase"),
        ),
    ]


def item_stats(fp: FeaturesParams) -> ViewSpec:
    """Item exposure stats over each window, with smoothed CTR and CVR."""
    feats: list[FeatureSpec] = []
    for w in fp.windows_days:
        feats += _counts("item", w, "of the item", with_carts=True)
        feats.append(
            FeatureSpec(
                f"item_gmv_{w}d",
                "float",
                f"sum of purchase prices of the item in the last {w} day(s)",
                ("purchase",),
            )
        )
        feats += _rates("item", w, fp.prior_strength)
    return ViewSpec(
        "item_stats",
        ("item_id",),
        tuple(feats),
        "item_stats",
        "Item exposure stats: exposures, clicks, carts, purchases, GMV, smoothed "
        "CTR/CVR per window (SID exposure weights, UniRec §3.2).",
    )


def user_stats(fp: FeaturesParams) -> ViewSpec:
    """User activity counts, activity days, average purchase price and last-event times."""
    w_max = fp.windows_days[-1]
    feats: list[FeatureSpec] = []
    for w in fp.windows_days:
        feats += _counts("user", w, "by the user", with_carts=True)
    feats += [
        FeatureSpec(
            f"user_active_days_{w_max}d",
            "int",
            f"days with any event of the user in the last {w_max} days",
        ),
        FeatureSpec(
            f"user_avg_purchase_price_{w_max}d",
            "float",
            f"mean price of the user's purchases in the last {w_max} days (null: none)",
            ("purchase",),
        ),
        FeatureSpec(
            "user_last_event_ts",
            "timestamp",
            f"time of the user's last event in the last {w_max} days (recency)",
        ),
        FeatureSpec(
            "user_last_interaction_ts",
            "timestamp",
            f"time of the user's last click, cart or purchase in the last {w_max} days",
        ),
        FeatureSpec(
            "user_last_purchase_ts",
            "timestamp",
            f"time of the user's last purchase in the last {w_max} days",
            ("purchase",),
        ),
    ]
    return ViewSpec(
        "user_stats",
        ("user_id",),
        tuple(feats),
        "user_stats",
        "User activity: counts per event type and window, active days, average "
        "purchase price and recency (DIG Table 1, Type-II).",
    )


def u2i_stats(fp: FeaturesParams, attribute: str) -> ViewSpec:
    """User x item-attribute cross stats (DIG §3.1 c_{u,v}, looked up via the item's attribute)."""
    prefix = f"u_{attribute}"
    feats: list[FeatureSpec] = []
    for w in fp.windows_days:
        feats += _counts(prefix, w, f"of the user on items of this {attribute}", with_carts=False)
        feats += _rates(prefix, w, fp.prior_strength)
    return ViewSpec(
        f"user_{attribute}",
        ("user_id", attribute),
        tuple(feats),
        "u2i",
        f"u2i cross stats of a user with a {attribute}: exposures, clicks, purchases "
        "and smoothed CTR/CVR per window (DIG §3.1, Table 1 Type-III).",
    )


# Recency, derived at request time by the on-demand feature view `user_recency` (repo.py) from
# the request's time and user_stats' last-event times: feature -> the timestamp it reads.
RECENCY = {
    "user_days_since_last_event": "user_last_event_ts",
    "user_days_since_last_interaction": "user_last_interaction_ts",
    "user_days_since_last_purchase": "user_last_purchase_ts",
}
REQUEST_TS = "request_ts"  # the request-time field of `user_recency` (its RequestSource)


def view_specs(fp: FeaturesParams) -> dict[str, ViewSpec]:
    """All feature views by name, in build order."""
    views = [item_stats(fp), user_stats(fp), *(u2i_stats(fp, a) for a in U2I_ATTRIBUTES)]
    return {v.name: v for v in views}


def end_of_day(day: dt.date) -> dt.datetime:
    """`event_timestamp` of day d's rows: midnight UTC that starts d+1 (holds events < it)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
