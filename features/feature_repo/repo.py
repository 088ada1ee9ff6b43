"""sidflow's Feast feature repo: entities, parquet sources, feature views and feature services.

Every object is declared here, by name, at module level. `feast apply` / `feast plan` read this
file (run from `features/feature_repo/` with $SIDFLOW_WORKDIR set, see README.md), and
`features.store.apply` registers the very same objects from Python
(`features.definitions.build_repo` runs this file).

The feature columns depend on params.yaml's `features` block: every window `w` of
`features.windows_days` (default 1, 7, 30) gives one column per statistic, e.g.
`item_clicks_1d`, `item_clicks_7d`, `item_clicks_30d`, and `features.ttl_days` sets the TTLs.
So each view's schema is generated from `features/schema.py` (names, types, definitions:
`sidflow features --describe`), whose definitions the SQL of `features/compute.py` follows.
The sources are the daily parquet tables `<workdir>/features/<view>/day=<d>.parquet`, written
by `sidflow features --day D` or the Dagster asset `feature_tables`.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, UnixTimestamp

import sidflow  # noqa: F401  (telemetry settings)
from features.definitions import fields, repo_settings
from features.schema import RECENCY, REQUEST_TS, TIMESTAMP, view_specs

OWNER = "features@sidflow"

settings = repo_settings()  # feature-table folder and `features` settings (windows, TTLs)
features_dir = settings.features_dir
ttl_days = settings.features.ttl_days
specs = view_specs(settings.features)  # the columns of each view, from features/schema.py
w_max = settings.features.windows_days[-1]  # the largest window, e.g. 30


# ----------------------------------------------------------------------------------------------
# Entities: who and what the features describe.
# ----------------------------------------------------------------------------------------------

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A user (canonical users.user_id).",
    owner=OWNER,
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalogue item (canonical items.item_id).",
    owner=OWNER,
)

cat_l2 = Entity(
    name="cat_l2",
    join_keys=["cat_l2"],
    value_type=ValueType.STRING,
    description="Second-level category of an item: key of user x cat_l2 cross features.",
    owner=OWNER,
)

cat_l3 = Entity(
    name="cat_l3",
    join_keys=["cat_l3"],
    value_type=ValueType.STRING,
    description="Third-level category of an item: key of user x cat_l3 cross features.",
    owner=OWNER,
)

brand = Entity(
    name="brand",
    join_keys=["brand"],
    value_type=ValueType.STRING,
    description="Brand of an item: key of user x brand cross features.",
    owner=OWNER,
)

seller = Entity(
    name="seller",
    join_keys=["seller"],
    value_type=ValueType.STRING,
    description="Seller of an item: key of user x seller cross features.",
    owner=OWNER,
)


# ----------------------------------------------------------------------------------------------
# Sources: one folder of daily parquet tables per view (rows stamped `event_timestamp`).
# ----------------------------------------------------------------------------------------------

item_stats_source = FileSource(
    name="item_stats_source",
    path=str(features_dir / "item_stats"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of item_stats, written by features/compute.py.",
    owner=OWNER,
)

user_stats_source = FileSource(
    name="user_stats_source",
    path=str(features_dir / "user_stats"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of user_stats, written by features/compute.py.",
    owner=OWNER,
)

user_cat_l2_source = FileSource(
    name="user_cat_l2_source",
    path=str(features_dir / "user_cat_l2"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of user_cat_l2, written by features/compute.py.",
    owner=OWNER,
)

user_cat_l3_source = FileSource(
    name="user_cat_l3_source",
    path=str(features_dir / "user_cat_l3"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of user_cat_l3, written by features/compute.py.",
    owner=OWNER,
)

user_brand_source = FileSource(
    name="user_brand_source",
    path=str(features_dir / "user_brand"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of user_brand, written by features/compute.py.",
    owner=OWNER,
)

user_seller_source = FileSource(
    name="user_seller_source",
    path=str(features_dir / "user_seller"),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP,
    description="Daily feature table of user_seller, written by features/compute.py.",
    owner=OWNER,
)


# ----------------------------------------------------------------------------------------------
# Feature views (DIG §3.1). A view's TTL lets a row stand until the next day's row is written.
# ----------------------------------------------------------------------------------------------

# Item exposure stats (also the SID builder's weights, UniRec §3.2); per window w:
# item_{exposures,clicks,carts,purchases}_{w}d, item_gmv_{w}d, item_ctr_{w}d, item_cvr_{w}d.
item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=timedelta(days=ttl_days["item_stats"]),
    schema=fields(specs["item_stats"]),
    source=item_stats_source,
    online=True,
    description=specs["item_stats"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "item_stats"},
)

# Request-level user features (DIG Type-II): user_{exposures,clicks,carts,purchases}_{w}d per
# window, then user_active_days_{W}d, user_avg_purchase_price_{W}d (W = largest window) and
# user_last_{event,interaction,purchase}_ts (recency).
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=ttl_days["user_stats"]),
    schema=fields(specs["user_stats"]),
    source=user_stats_source,
    online=True,
    description=specs["user_stats"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "user_stats"},
)

# The u2i cross stats (DIG Type-III) of a user with a candidate item's cat_l2 / cat_l3 / brand /
# seller; per window w: u_<key>_{exposures,clicks,purchases}_{w}d, u_<key>_ctr_{w}d,
# u_<key>_cvr_{w}d (e.g. u_cat_l2_clicks_7d).

# User x second-level category.
user_cat_l2 = FeatureView(
    name="user_cat_l2",
    entities=[user, cat_l2],
    ttl=timedelta(days=ttl_days["u2i"]),
    schema=fields(specs["user_cat_l2"]),
    source=user_cat_l2_source,
    online=True,
    description=specs["user_cat_l2"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "u2i"},
)

# User x third-level category.
user_cat_l3 = FeatureView(
    name="user_cat_l3",
    entities=[user, cat_l3],
    ttl=timedelta(days=ttl_days["u2i"]),
    schema=fields(specs["user_cat_l3"]),
    source=user_cat_l3_source,
    online=True,
    description=specs["user_cat_l3"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "u2i"},
)

# User x brand.
user_brand = FeatureView(
    name="user_brand",
    entities=[user, brand],
    ttl=timedelta(days=ttl_days["u2i"]),
    schema=fields(specs["user_brand"]),
    source=user_brand_source,
    online=True,
    description=specs["user_brand"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "u2i"},
)

# User x seller.
user_seller = FeatureView(
    name="user_seller",
    entities=[user, seller],
    ttl=timedelta(days=ttl_days["u2i"]),
    schema=fields(specs["user_seller"]),
    source=user_seller_source,
    online=True,
    description=specs["user_seller"].description,
    owner=OWNER,
    tags={"stage": "features", "ttl_group": "u2i"},
)


# ----------------------------------------------------------------------------------------------
# Request-time features: recency from the request's time (an on-demand feature view).
# ----------------------------------------------------------------------------------------------

request_time = RequestSource(
    name="request_time",
    schema=[Field(name=REQUEST_TS, dtype=UnixTimestamp)],
    description="When the request is served (offline: the sample's event_timestamp).",
    owner=OWNER,
)


# Days from the request to the user's last event, interaction and purchase (user_stats'
# user_last_*_ts); null when the user has none in the window. The same function offline
# (get_historical_features) and online (features/store.py applies this view's transform).
# Feast stores the function's source and runs it without this module's globals: its names are
# spelled out here (features/schema.RECENCY; build_repo checks they agree).
@on_demand_feature_view(
    sources=[user_stats[list(RECENCY.values())], request_time],
    schema=[Field(name=name, dtype=Float64) for name in RECENCY],
    mode="python",
    description="Recency: days from the request time to the user's last event, "
    "interaction and purchase (DIG Table 1, Type-II).",
    owner=OWNER,
    tags={"stage": "features"},
)
def user_recency(inputs: dict) -> dict:
    now = inputs["request_ts"]
    last = {
        "user_days_since_last_event": inputs["user_last_event_ts"],
        "user_days_since_last_interaction": inputs["user_last_interaction_ts"],
        "user_days_since_last_purchase": inputs["user_last_purchase_ts"],
    }
    return {
        name: [
            (n - t).total_seconds() / 86400.0 if n is not None and t is not None else None
            for n, t in zip(now, then, strict=True)
        ]
        for name, then in last.items()
    }


# ----------------------------------------------------------------------------------------------
# Feature services: one per consumer.
# ----------------------------------------------------------------------------------------------

ranker = FeatureService(
    name="ranker",
    features=[
        item_stats,
        user_stats,
        user_cat_l2,
        user_cat_l3,
        user_brand,
        user_seller,
        user_recency,
    ],
    description="DIG ranker: user, item and all u2i cross features of (user, candidate item).",
    owner=OWNER,
    tags={"consumer": "ranker"},
)

retriever = FeatureService(
    name="retriever",
    features=[user_stats, user_cat_l2, user_cat_l3],
    description="UniRec retriever: request-level user features and user x category stats "
    "for the Chain-of-Attribute category prefix.",
    owner=OWNER,
    tags={"consumer": "retriever"},
)

sid_weights = FeatureService(
    name="sid_weights",
    features=[
        item_stats[
            [
                f"item_exposures_{w_max}d",
                f"item_clicks_{w_max}d",
                f"item_carts_{w_max}d",
                f"item_purchases_{w_max}d",
            ]
        ]
    ],
    description="SID builder: item exposure and interaction counts over the largest window "
    "(UniRec §3.2 capacity weights).",
    owner=OWNER,
    tags={"consumer": "sid_weights"},
)
