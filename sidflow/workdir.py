"""The one ignored working folder: every generated file lives under it.

Two locations may live elsewhere, set by `serving.registry_path` and
`serving.exposure_log_dir` (a shared folder several serving replicas and the pipeline use):
`Workdir.of(params)` knows them; `Workdir(root)` puts them in the working folder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sidflow.config import Params


@dataclass(frozen=True)
class Workdir:
    """Named locations inside the working folder (created on demand)."""

    root: Path
    registry_path: Path | None = None  # the registry file, if not in the working folder
    exposure_log_dir: Path | None = None  # the exposure log's folder, if not in it

    @classmethod
    def of(cls, params: Params) -> Workdir:
        """The working folder of `params`, with the serving locations its settings name."""
        sp = params.serving
        return cls(Path(params.workdir), sp.registry_path, sp.exposure_log_dir)

    def _dir(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def warehouse(self) -> Path:
        """The DuckDB warehouse file."""
        return self._dir() / "warehouse.duckdb"

    def raw_dir(self, table: str, day: dt.date | None = None) -> Path:
        """Landing folder for raw batches, kept exactly as received."""
        return self._dir("raw", table, f"day={day.isoformat()}") if day else self._dir("raw", table)

    def validated_dir(self, table: str) -> Path:
        """Rows of `table` that passed their contract: `day=<d>.parquet`, `history.parquet`."""
        return self._dir("validated", table)

    def validated_path(self, table: str, day: dt.date) -> Path:
        """Rows of `table` for `day` that passed their contract (parquet)."""
        return self.validated_dir(table) / f"day={day.isoformat()}.parquet"

    def quarantine_dir(self, table: str) -> Path:
        """Rejected rows and rejected batches, with the rule they broke."""
        return self._dir("quarantine", table)

    @property
    def gx_root(self) -> Path:
        """Great Expectations project folder (suites, results, Data Docs)."""
        return self._dir("gx_project")

    @property
    def data_docs_index(self) -> Path:
        """The Data Docs site's index page."""
        return self.gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME: run storage, event logs, schedules."""
        return self._dir("dagster_home")

    @property
    def reports(self) -> Path:
        """Reports and plots written by runs."""
        return self._dir("reports")

    def dataset_dir(self, name: str) -> Path:
        """Canonical tables of a loaded dataset (e.g. amazon-beauty)."""
        return self._dir("datasets", name)

    @property
    def sid_dir(self) -> Path:
        """Semantic ID versions: `day=<d>/` (Dagster), `<dataset>/` (DVC), `cache/` (embeddings)."""
        return self._dir("sid")

    @property
    def features_dir(self) -> Path:
        """Feature tables: `<view>/day=<d>.parquet` (Feast's duckdb offline store reads them)."""
        return self._dir("features")

    def feature_table_path(self, view: str, day: dt.date) -> Path:
        """The parquet file of one feature view for one day (rewritten whole, idempotent)."""
        return self._dir("features", view) / f"day={day.isoformat()}.parquet"

    @property
    def feast_dir(self) -> Path:
        """Feast state: file registry and SQLite online store."""
        return self._dir("feast")

    def retriever_dir(self, day: dt.date, variant: str = "unirec") -> Path:
        """A retriever run: `models/retriever/day=<d>/` (ablation variants in subfolders)."""
        parts = ("models", "retriever", f"day={day.isoformat()}")
        return self._dir(*parts) if variant == "unirec" else self._dir(*parts, variant)

    def ranker_dir(self, day: dt.date, variant: str = "dig") -> Path:
        """A ranker run: `models/ranker/day=<d>/` (config.json, ranker.safetensors, samples)."""
        parts = ("models", "ranker", f"day={day.isoformat()}")
        return self._dir(*parts) if variant == "dig" else self._dir(*parts, variant)

    def ranker_eval_dir(self, day: dt.date) -> Path:
        """The ranker's evaluation: `models/ranker_eval/day=<d>/metrics.json` and plots."""
        return self._dir("models", "ranker_eval", f"day={day.isoformat()}")

    def aligned_retriever_dir(self, day: dt.date) -> Path:
        """The RFT + DPO aligned retriever: `models/aligned_retriever/day=<d>/`."""
        return self._dir("models", "aligned_retriever", f"day={day.isoformat()}")

    @property
    def registry(self) -> Path:
        """The registry of promoted and candidate model versions (JSON)."""
        if self.registry_path is not None:
            self.registry_path.parent.mkdir(parents=True, exist_ok=True)
            return self.registry_path
        return self._dir("registry") / "registry.json"

    @property
    def exposure_logs(self) -> Path:
        """The exposure log: `day=<d>/` folders of parquet files (serving/exposure_log.py)."""
        if self.exposure_log_dir is not None:
            self.exposure_log_dir.mkdir(parents=True, exist_ok=True)
            return self.exposure_log_dir
        return self._dir("serving", "logs")

    @property
    def mlflow(self) -> Path:
        """The local MLflow tracking store: `mlflow.db` and `artifacts/` (models/tracking.py)."""
        return self._dir("mlflow")


def previous_run(runs: Path, day: dt.date) -> Path | None:
    """The latest finished run folder (`runs/day=<d'>`, d' < d, with train.json), if any."""
    done = [
        r
        for r in runs.glob("day=*")
        if (r / "train.json").exists() and r.name.removeprefix("day=") < day.isoformat()
    ]
    return max(done, key=lambda r: r.name) if done else None
