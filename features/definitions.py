"""sidflow's Feast objects, loaded from `features/feature_repo/repo.py` where they are declared.

repo.py declares every entity, parquet source, feature view and feature service by name at
module level, as in Feast's own templates; `feast apply` reads it from the CLI. `build_repo`
runs the same file for a given feature-table folder and `features` settings (windows, TTLs)
and collects its objects the way `feast apply` does, so `features.store.apply` registers
exactly what the CLI registers. The helpers repo.py uses are here too: `repo_settings` (the
folder and settings to declare for) and `fields` (a view's schema from `features.schema`).
"""

from __future__ import annotations

import runpy
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.types import Float64, Int64, UnixTimestamp

from features.schema import RECENCY, ViewSpec, view_specs
from sidflow.config import FeaturesParams, load_params
from sidflow.workdir import Workdir

REPO_FILE = Path(__file__).resolve().parent / "feature_repo" / "repo.py"
FEAST_TYPES = {"int": Int64, "float": Float64, "timestamp": UnixTimestamp}


@dataclass(frozen=True)
class RepoSettings:
    """What repo.py declares its objects for: the feature-table folder and `features` settings."""

    features_dir: Path
    features: FeaturesParams


# Set by `build_repo` while it runs repo.py; unset when the `feast` CLI imports repo.py.
_SETTINGS: ContextVar[RepoSettings | None] = ContextVar("sidflow_feast_repo", default=None)


def repo_settings() -> RepoSettings:
    """The settings repo.py declares its objects for.

    Inside `build_repo`: the folder and settings it was given. Otherwise (the `feast` CLI):
    the features folder of $SIDFLOW_WORKDIR (else params.yaml's `workdir`) and params.yaml's
    `features` block.
    """
    settings = _SETTINGS.get()
    if settings is None:
        params = load_params()
        settings = RepoSettings(Workdir(params.workdir).features_dir.resolve(), params.features)
    return settings


def fields(spec: ViewSpec) -> list[Field]:
    """A feature view's schema: one Feast field per feature column of `spec`, in table order."""
    return [
        Field(name=f.name, dtype=FEAST_TYPES[f.kind], description=f.definition)
        for f in spec.features
    ]


@dataclass(frozen=True)
class FeastRepo:
    """Every Feast object of repo.py, by name (sources by the name of the view they feed)."""

    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    request_sources: dict[str, RequestSource]
    on_demand: dict[str, OnDemandFeatureView]  # request-time views (recency)

    def objects(self) -> list:
        """All objects, in the order `FeatureStore.apply` takes them."""
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.request_sources.values(),
            *self.views.values(),
            *self.on_demand.values(),
            *self.services.values(),
        ]


def build_repo(features_dir: Path, fp: FeaturesParams) -> FeastRepo:
    """All Feast objects of repo.py, declared for feature tables under `features_dir`.

    Runs repo.py with these settings and collects its module-level objects in declaration
    order (what `feast apply` registers), then checks the views against `features.schema`.
    """
    features_dir = Path(features_dir).resolve()
    token = _SETTINGS.set(RepoSettings(features_dir, fp))
    try:
        namespace = runpy.run_path(str(REPO_FILE), run_name="sidflow_feature_repo")
    finally:
        _SETTINGS.reset(token)
    objs = list(namespace.values())
    views = {o.name: o for o in objs if isinstance(o, FeatureView)}
    repo = FeastRepo(
        entities={o.name: o for o in objs if isinstance(o, Entity)},
        sources={name: view.batch_source for name, view in views.items()},
        views=views,
        services={o.name: o for o in objs if isinstance(o, FeatureService)},
        request_sources={o.name: o for o in objs if isinstance(o, RequestSource)},
        on_demand={o.name: o for o in objs if isinstance(o, OnDemandFeatureView)},
    )
    declared = [o for o in objs if isinstance(o, FileSource)]
    problems = check_views(repo, features_dir, fp)
    recency = repo.on_demand.get("user_recency")
    if recency is None or [f.name for f in recency.features] != list(RECENCY):
        problems.append(f"the on-demand view user_recency must give {list(RECENCY)}")
    if {id(s) for s in declared} != {id(s) for s in repo.sources.values()}:
        problems.append("every declared source must feed exactly the views that use it")
    if problems:
        raise ValueError(f"{REPO_FILE} disagrees with features/schema.py: " + "; ".join(problems))
    return repo


def check_views(repo: FeastRepo, features_dir: Path, fp: FeaturesParams) -> list[str]:
    """Where repo.py's views differ from `features.schema` (names, keys, fields, TTLs, sources)."""
    specs = view_specs(fp)
    if list(repo.views) != list(specs):
        return [f"views {list(repo.views)} != {list(specs)}"]
    problems = []
    for name, spec in specs.items():
        view = repo.views[name]
        keys = [repo.entities[e].join_key for e in view.entities]
        if keys != list(spec.join_keys):
            problems.append(f"{name}: join keys {keys} != {list(spec.join_keys)}")
        if [f.name for f in view.features] != spec.feature_names:
            problems.append(f"{name}: fields differ from view_specs()['{name}']")
        if view.ttl != timedelta(days=fp.ttl_days[spec.ttl_group]):
            problems.append(f"{name}: ttl {view.ttl} != ttl_days['{spec.ttl_group}']")
        if Path(view.batch_source.path) != features_dir / name:
            problems.append(
                f"{name}: source path {view.batch_source.path} != {features_dir / name}"
            )
    return problems
