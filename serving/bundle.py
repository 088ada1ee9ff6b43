"""The recommender bundle: everything serving needs, saved as one BentoML model.

Contents (a folder inside the BentoML model store, `<workdir>/bentoml/models/`):
- `retriever/model.safetensors` + `retriever/item_paths.parquet`: the UniRec checkpoint and
  the catalogue's decoding paths (the trie is rebuilt from them);
- `ranker/` when a ranker was trained (loaded through `models.ranker.serving`);
- `catalogue.parquet`, `users.parquet`: the vocabularies the model was trained with;
- `histories.parquet`: every user's last engagements up to the bundle's day (the history a
  request without one is served with);
- `popularity.parquet`: engagements per item and scene over the last days (the fallback);
- `candidates.parquet`: the near-line candidates, each active user's beam output per scene
  (serving/nearline.py), when `serving.nearline.enabled`;
- `manifest.json`: day, SID version and its DVC version (hash, path in the working folder's
  DVC store, remote: `sidflow sid checkout` restores the exact table), training window, gated
  metrics, the MLflow runs of the models it holds.
Labels on the BentoML model repeat the manifest's key facts, so `bentoml models list` shows them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from sidflow.config import ServingParams

MODEL_NAME = "sidflow-recommender"
POPULARITY_DAYS = 7


def model_store(workdir: Path):  # noqa: ANN201 - bentoml's ModelStore
    """The BentoML model store under the working folder (not ~/bentoml)."""
    return store_at(Path(workdir) / "bentoml" / "models")


def store_at(path: Path):  # noqa: ANN201 - bentoml's ModelStore
    """The BentoML model store in the folder `path` (e.g. a shared one, `serving.model_store_dir`)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    from bentoml._internal.models import ModelStore  # explicit store: one per folder

    Path(path).mkdir(parents=True, exist_ok=True)
    return ModelStore(Path(path))


def histories(events: pd.DataFrame, history_len: int) -> pd.DataFrame:
    """Last `history_len` engagements per user (user_id, item_id, event_type, ts), oldest first."""
    ev = events[events["event_type"].isin(["click", "cart", "purchase"])]
    ev = ev.sort_values(["user_id", "ts"], kind="stable")
    return ev.groupby("user_id", sort=False).tail(history_len)[
        ["user_id", "item_id", "event_type", "ts"]
    ]


def popularity(events: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Engagements per (scene, item) over the `POPULARITY_DAYS` days up to `day`."""
    ts = pd.to_datetime(events["ts"], utc=True)
    start = pd.Timestamp(day - dt.timedelta(days=POPULARITY_DAYS - 1), tz="UTC")
    recent = events[(ts >= start) & events["event_type"].isin(["click", "cart", "purchase"])]
    counts = recent.groupby(["scene", "item_id"]).size().rename("engagements").reset_index()
    return counts.sort_values(["scene", "engagements", "item_id"], ascending=[True, False, True])


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:10]


@dataclass
class BundleManifest:
    """What a bundle is (its manifest.json): the day, what it was trained on, what it holds."""

    day: str
    task_behaviour: str  # the Task-Conditioned BOS requests ask with (unirec §3.4)
    sid_version: str
    sid_dvc_hash: str
    window: str  # the engagements the retriever learnt from
    parts: list[str]  # "retriever", and "ranker" when one was trained
    metrics: dict  # the gated numbers: {"retriever": ..., "ranker": ...}
    sid_dvc_path: str = ""  # the version's folder in the DVC store (models/tokenizer/versions.py)
    sid_dvc_remote: str = ""  # the DVC remote it was pushed to
    mlflow_runs: dict = field(default_factory=dict)  # part -> MLflow run link (models/tracking.py)
    feature_service: str = ""  # the Feast feature service the ranker reads online ("" without one)

    def to_json(self) -> dict:
        """The manifest.json content."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> BundleManifest:
        """A manifest read back (`read_manifest`); keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def save_bundle(
    workdir: Path,
    day: dt.date,
    parts: dict[str, Path],
    tables: dict[str, pd.DataFrame],
    manifest: BundleManifest,
    serving: ServingParams | None = None,
) -> str:
    """Save a bundle to the model store; returns its tag (`sidflow-recommender:<version>`).

    `parts`: folder name -> source folder (e.g. {"retriever": run_dir, "ranker": ranker_dir});
    `tables`: file stem -> frame (catalogue, users, histories, popularity). The version is the
    day plus a content hash, so rebuilding the same bundle yields the same tag (idempotent).
    With `serving` (and `serving.nearline.enabled`) the bundle also gets the near-line
    candidates of the users active in `serving.nearline.active_days`, at `serving.beam_size`.
    """
    staging = Path(workdir) / "bentoml" / "staging" / f"day={day}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, src in parts.items():
        dst = staging / name
        dst.mkdir()
        for f in ("model.safetensors", "item_paths.parquet", "config.json", "ranker.safetensors"):
            if (Path(src) / f).exists():
                shutil.copy2(Path(src) / f, dst / f)
    for stem, frame in tables.items():
        frame.to_parquet(staging / f"{stem}.parquet", index=False)
    (staging / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2, default=str))
    if serving is not None and serving.nearline.enabled:
        from serving.nearline import add_nearline  # torch and the models only where needed

        add_nearline(staging, day, tables["histories"], serving)
    version = f"d{day:%Y%m%d}-{_fingerprint(staging)}"
    tag = f"{MODEL_NAME}:{version}"
    store = model_store(workdir)
    import bentoml  # imported where used, as in model_store

    try:
        store.get(tag)
        shutil.rmtree(staging)
        return tag  # the same content is already saved
    except bentoml.exceptions.NotFound:
        pass
    labels = {
        "day": day.isoformat(),
        "sid_version": manifest.sid_version,
        "sid_dvc_hash": manifest.sid_dvc_hash,
        "window": manifest.window,
        "ranker": "yes" if "ranker" in parts else "no",
    }
    with bentoml.models.create(
        tag, labels=labels, metadata={"metrics": manifest.metrics}, _model_store=store
    ) as model:
        shutil.copytree(staging, model.path, dirs_exist_ok=True)
    shutil.rmtree(staging)
    return tag


def bundle_path(workdir: Path, tag: str) -> Path:
    """The folder of a saved bundle (raises bentoml's NotFound for an unknown tag)."""
    return Path(model_store(workdir).get(tag).path)


def find_bundle(tag: str, store_dir: Path) -> Path:
    """The folder of bundle `tag` for a serving process: the running Bento's own model (BentoML's
    store under $BENTOML_HOME, where `bentoml import` / `bentoml serve <bento>` find it) when it
    is that bundle, else the store in `store_dir` (the pipeline's, or a shared copy of it, where
    newer promoted bundles appear). Raises bentoml's NotFound when neither has it."""
    import bentoml  # imported where used, as in model_store

    try:
        return Path(bentoml.models.get(tag).path)
    except bentoml.exceptions.NotFound:
        return Path(store_at(store_dir).get(tag).path)


def read_manifest(workdir: Path, tag: str) -> dict:
    """A bundle's manifest."""
    return json.loads((bundle_path(workdir, tag) / "manifest.json").read_text())
