"""The Feast objects of sidflow: entities, parquet sources, feature views and feature services.

Built from `features.schema` (names, types, definitions) and the `features` settings (windows,
TTLs), for a given feature-table folder. `features/feature_repo/repo.py` exposes them to the
`feast` CLI; `features.store.apply` registers the same objects from Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, UnixTimestamp

from features.schema import ENTITY_KEYS, TIMESTAMP, ViewSpec, view_specs
from sidflow.config import FeaturesParams

OWNER = "features@sidflow"
FEAST_TYPES = {"int": Int64, "float": Float64, "timestamp": UnixTimestamp}
ENTITY_DESCRIPTIONS = {
    "user": "A user (canonical users.user_id).",
    "item": "A catalogue item (canonical items.item_id).",
    "cat_l2": "Second-level category of an item: key of user x cat_l2 cross features.",
    "cat_l3": "Third-level category of an item: key of user x cat_l3 cross features.",
    "brand": "Brand of an item: key of user x brand cross features.",
    "seller": "Seller of an item: key of user x seller cross features.",
}
# Which views each consumer reads (the Feast feature services).
SERVICES = {
    "ranker": "DIG ranker: user, item and all u2i cross features of (user, candidate item).",
    "retriever": "UniRec retriever: request-level user features and user x category stats "
    "for the Chain-of-Attribute category prefix.",
    "sid_weights": "SID builder: item exposure and interaction counts over the largest window "
    "(UniRec §3.2 capacity weights).",
}


@dataclass(frozen=True)
class FeastRepo:
    """Every Feast object of the repo, by name."""

    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]

    def objects(self) -> list:
        """All objects, in the order `FeatureStore.apply` takes them."""
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.views.values(),
            *self.services.values(),
        ]


def entities() -> dict[str, Entity]:
    """user, item and the item attributes that key the u2i cross features."""
    return {
        name: Entity(
            name=name,
            join_keys=[key],
            value_type=ValueType.STRING,
            description=ENTITY_DESCRIPTIONS[name],
            owner=OWNER,
        )
        for name, key in ENTITY_KEYS.items()
    }


def source(spec: ViewSpec, features_dir: Path) -> FileSource:
    """The folder of one view's parquet files, one per day (`<view>/day=<d>.parquet`)."""
    return FileSource(
        name=f"{spec.name}_source",
        path=str(Path(features_dir).resolve() / spec.name),
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP,
        description=f"Daily feature table of {spec.name}, written by features/compute.py.",
        owner=OWNER,
    )


def feature_view(
    spec: ViewSpec, src: FileSource, ents: dict[str, Entity], fp: FeaturesParams
) -> FeatureView:
    """A feature view over `src`, whose TTL lets a row stand until the next one is written."""
    by_key = {e.join_key: e for e in ents.values()}
    return FeatureView(
        name=spec.name,
        entities=[by_key[k] for k in spec.join_keys],
        ttl=timedelta(days=fp.ttl_days[spec.ttl_group]),
        schema=[
            Field(name=f.name, dtype=FEAST_TYPES[f.kind], description=f.definition)
            for f in spec.features
        ],
        source=src,
        online=True,
        description=spec.description,
        owner=OWNER,
        tags={"stage": "features", "ttl_group": spec.ttl_group},
    )


def feature_services(views: dict[str, FeatureView], fp: FeaturesParams) -> dict:
    """One feature service per consumer: ranker, retriever, sid_weights."""
    w = fp.windows_days[-1]
    weights = [f"item_{c}_{w}d" for c in ("exposures", "clicks", "carts", "purchases")]
    members = {
        "ranker": list(views.values()),
        "retriever": [views["user_stats"], views["user_cat_l2"], views["user_cat_l3"]],
        "sid_weights": [views["item_stats"][weights]],
    }
    return {
        name: FeatureService(
            name=name,
            features=members[name],
            description=SERVICES[name],
            owner=OWNER,
            tags={"consumer": name},
        )
        for name in SERVICES
    }


def build_repo(features_dir: Path, fp: FeaturesParams) -> FeastRepo:
    """All Feast objects for feature tables under `features_dir`."""
    ents = entities()
    specs = view_specs(fp)
    sources = {name: source(spec, features_dir) for name, spec in specs.items()}
    views = {name: feature_view(spec, sources[name], ents, fp) for name, spec in specs.items()}
    return FeastRepo(ents, sources, views, feature_services(views, fp))
