"""MLflow tracking (models/tracking.py): where runs go per profile, what a run holds, and a
store that cannot be reached never stops training."""

from __future__ import annotations

from mlflow import MlflowClient

from models.tracking import RunLink, add_to_run, metric_name, start_run, tracking_uri
from sidflow.config import load_params


def test_uri_follows_the_profile(workdir):
    local = load_params()
    assert tracking_uri(local) == f"sqlite:///{workdir.root / 'mlflow' / 'mlflow.db'}"
    deployed = load_params(overrides={"lifecycle.profile": "deployment"})
    assert tracking_uri(deployed) == deployed.tracking.server_url
    chosen = load_params(overrides={"tracking.uri": "postgresql://db/mlflow"})
    assert tracking_uri(chosen) == "postgresql://db/mlflow"
    assert metric_name("hr@50") == "hr_at_50" and metric_name("a:b c") == "a_b c"


def test_a_run_holds_settings_curves_metrics_and_later_tags(workdir, tmp_path):
    params = load_params()
    png = tmp_path / "loss.png"
    png.write_bytes(b"\x89PNG")
    link = start_run(
        params,
        "ranker 2026-01-03",
        {"ranker": {"lr": 0.002, "u2t": "mlp"}},
        tags={"sidflow.stage": "ranker", "sidflow.sid_version": "d20260103-abc"},
        curves={"loss_total": [(20, 1.5), (40, 1.2), (60, float("nan"))]},
        metrics={"steps": 60, "click_rate": 0.1, "skipped": None},
        artifacts=[png],
    )
    assert link.run_id and link.error is None
    assert add_to_run(link, {"eval_rank_auc": 0.7}, {"sidflow.bentoml_tag": "rec:d1"})
    client = MlflowClient(link.uri)
    run = client.get_run(link.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ranker 2026-01-03"
    assert run.data.params == {"ranker.lr": "0.002", "ranker.u2t": "mlp"}
    assert run.data.metrics == {
        "steps": 60,
        "click_rate": 0.1,
        "eval_rank_auc": 0.7,
        "loss_total": 1.2,
    }
    history = client.get_metric_history(link.run_id, "loss_total")
    assert [(h.step, h.value) for h in history] == [(20, 1.5), (40, 1.2)]
    assert run.data.tags["sidflow.bentoml_tag"] == "rec:d1"
    assert [a.path for a in client.list_artifacts(link.run_id)] == ["loss.png"]
    # a second training run lands in the same experiment
    again = start_run(params, "ranker 2026-01-04", {}, tags={})
    assert len(client.search_runs([run.info.experiment_id])) == 2 and again.run_id


def test_tracking_off_or_unreachable_never_stops_training(workdir, monkeypatch):
    assert start_run(load_params(overrides={"tracking.enabled": False}), "x", {}, {}) is None
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = load_params(overrides={"tracking.uri": "http://127.0.0.1:9"})  # nothing listens
    link = start_run(down, "retriever 2026-01-03", {"a": 1}, {})
    assert link.run_id is None and link.error
    assert not add_to_run(link, {"x": 1.0})
    assert RunLink.from_json(link.to_json()) == link and RunLink.from_json(None) is None


def test_make_ui_tells_how_to_open_mlflow(workdir):
    from lifecycle.cli.ui import mlflow_hint

    hint = mlflow_hint(load_params())
    assert (
        f"mlflow ui --backend-store-uri sqlite:///{workdir.root / 'mlflow' / 'mlflow.db'}" in hint
    )
    deployed = load_params(overrides={"lifecycle.profile": "deployment"})
    assert mlflow_hint(deployed).endswith(f"open {deployed.tracking.server_url}")
