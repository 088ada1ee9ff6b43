"""MLflow experiment tracking of every training and alignment run.

Each training stage (retriever, ranker, alignment; whoever calls it: Dagster, the CLI, DVC,
the benchmarks) logs one MLflow run in the experiment `tracking.experiment`: its settings as
params, its loss curves step by step, its final metrics, the loss plot, and tags naming the
stage, the day, the SID version and (set by `bento_bundle` when the bundle is saved) the
BentoML tag that serves it. The evaluation of a run adds its metrics to the same MLflow run:
the run folder's `train.json` keeps the `RunLink`.

Where (`tracking.uri`): `auto` is a SQLite store under the working folder locally
(`<workdir>/mlflow/mlflow.db`, artefacts beside it) and `tracking.server_url` in the deployment
profile; any MLflow tracking URI works (a server, `postgresql://...`). Curves are logged in one
batch when training ends (the training loop never waits on the tracking store). Tracking is
observability, not a gate: a store that cannot be reached is reported (a warning, and
`RunLink.error`) and training goes on.

`mlflow` is imported where it is used: a heavy import (~3 s) the CLI's `--help` must not pay.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sidflow.config import Params, by_profile
from sidflow.workdir import Workdir

BATCH = 500  # metrics per log_batch call (MLflow accepts up to 1000)


def metric_name(key: str) -> str:
    """An MLflow-valid metric name: `hr@50` -> `hr_at_50` (MLflow takes letters, digits and
    `_-. /`)."""
    return re.sub(r"[^\w\-. /]", "_", key.replace("@", "_at_"))


@dataclass(frozen=True)
class RunLink:
    """Where a training run's MLflow run is: what `train.json` keeps for the evaluation."""

    uri: str
    experiment: str
    run_id: str | None
    error: str | None = None  # why nothing was logged

    def to_json(self) -> dict:
        """JSON-friendly."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping | None) -> RunLink | None:
        """A link read back from `train.json` (None when the run was not tracked)."""
        return cls(**raw) if raw else None


def tracking_uri(params: Params) -> str:
    """The profile's MLflow tracking URI (`tracking.uri`, `auto` resolved)."""
    tp = params.tracking
    local = f"sqlite:///{local_store(params) / 'mlflow.db'}"
    return by_profile(tp.uri, params.lifecycle.profile, local, tp.server_url)


def local_store(params: Params) -> Path:
    """The working folder's MLflow folder (`mlflow.db`, `artifacts/`)."""
    return Workdir(params.workdir).mlflow.resolve()


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize the first use of a local SQLite store across processes (the multiprocess
    executor trains the retriever and the ranker at once; both would create its tables)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///") + ".lock")
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _client(uri: str):  # noqa: ANN202 - mlflow.MlflowClient
    from mlflow import MlflowClient  # heavy import, only when a run is tracked

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, artifacts: str | None) -> str:  # noqa: ANN001
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts)


def flatten(settings: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: dotted keys, string values."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = str(value)[:6000]
    return out


def start_run(
    params: Params,
    name: str,
    settings: Mapping,
    tags: Mapping[str, str],
    curves: Mapping[str, list[tuple[int, float]]] | None = None,
    metrics: Mapping[str, float] | None = None,
    artifacts: list[Path] = (),
) -> RunLink | None:
    """Log a finished training run: settings as params, each curve step by step, final metrics,
    artefact files; returns its link (None when `tracking.enabled` is off)."""
    tp = params.tracking
    if not tp.enabled:
        return None
    uri = tracking_uri(params)
    try:
        with _store_lock(uri):
            client = _client(uri)
            artifacts_root = None
            if uri.startswith("sqlite:///"):  # a local store keeps its artefacts beside it
                artifacts_root = (local_store(params) / "artifacts").as_uri()
            experiment = _experiment_id(client, tp.experiment, artifacts_root)
        run = client.create_run(experiment, run_name=name, tags=dict(tags))
        run_id = run.info.run_id
        _log(client, run_id, settings, curves or {}, metrics or {}, artifacts)
        client.set_terminated(run_id, "FINISHED")
    except Exception as e:  # noqa: BLE001 - observability, not a gate: say why, go on
        error = f"{type(e).__name__}: {e}"
        warnings.warn(f"MLflow tracking at {uri} failed: {error}", stacklevel=2)
        return RunLink(uri, tp.experiment, None, error[:500])
    return RunLink(uri, tp.experiment, run_id)


def _log(
    client,  # noqa: ANN001
    run_id: str,
    settings: Mapping,
    curves: Mapping[str, list[tuple[int, float]]],
    metrics: Mapping[str, float],
    artifacts: list[Path],
) -> None:
    from mlflow.entities import Metric, Param  # heavy import, with the client

    now = int(time.time() * 1000)
    items = [Param(k, v) for k, v in flatten(settings).items()]
    for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
        client.log_batch(run_id, params=items[start : start + 100])
    points = [
        Metric(metric_name(key), float(value), now, int(step))
        for key, curve in curves.items()
        for step, value in curve
        if value == value  # NaN is not a point
    ]
    points += [
        Metric(metric_name(k), float(v), now, 0)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    ]
    for start in range(0, len(points), BATCH):
        client.log_batch(run_id, metrics=points[start : start + BATCH])
    for path in artifacts:
        if Path(path).exists():
            client.log_artifact(run_id, str(path))


def add_to_run(
    link: RunLink | None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    artifacts: list[Path] = (),
) -> bool:
    """Add metrics (step 0), tags and artefacts to a logged run (e.g. its evaluation, the
    bundle that serves it). False when there is no run to add to or the store failed."""
    if link is None or link.run_id is None:
        return False
    try:
        client = _client(link.uri)
        _log(client, link.run_id, {}, {}, metrics or {}, artifacts)
        for key, value in (tags or {}).items():
            client.set_tag(link.run_id, key, str(value))
    except Exception as e:  # noqa: BLE001 - observability, not a gate
        warnings.warn(f"MLflow tracking at {link.uri} failed: {e}", stacklevel=2)
        return False
    return True


def curve(points: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of `key` in a list of {"step": ..., key: ...} records."""
    return [(int(p["step"]), float(p[key])) for p in points if key in p]
