"""Operations of the service without a server: a rejected request is one WARNING line (no
traceback), and the Prometheus metrics count per bucket and model."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from bentoml._internal.server.http_app import log_exception
from bentoml.exceptions import BadInput
from pydantic import BaseModel, Field, ValidationError

from serving.recommender import Recommendation, Served
from serving.telemetry import BENTOML_HTTP_LOGGER, Metrics, install_bad_request_log

REQUEST = SimpleNamespace(url=SimpleNamespace(path="/recommend"), method="POST")


class Body(BaseModel):
    user_id: str = Field(pattern=r"^[\w.:-]+$")
    k: int = Field(ge=1)


def _log(exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - logged the way BentoML's handler does
        log_exception(REQUEST)


def test_a_rejected_request_is_one_warning_line_naming_field_and_reason(caplog):
    rejected = []
    install_bad_request_log(rejected.append)
    with pytest.raises(ValidationError) as err:
        Body.model_validate({"user_id": "u1; DROP TABLE", "k": 0})
    with caplog.at_level(logging.INFO, logger=BENTOML_HTTP_LOGGER):
        _log(err.value)
        _log(BadInput("Invalid JSON input received"))
        _log(RuntimeError("a real bug"))
    bad, bad_json, bug = caplog.records
    assert bad.levelname == "WARNING" and bad.exc_info is None and "\n" not in bad.getMessage()
    assert "POST /recommend (400)" in bad.getMessage()
    assert "user_id: String should match pattern" in bad.getMessage()
    assert "k: Input should be greater than or equal to 1" in bad.getMessage()
    assert bad_json.levelname == "WARNING" and "Invalid JSON" in bad_json.getMessage()
    assert bug.levelname == "ERROR" and bug.exc_info is not None  # a 500 keeps its traceback
    assert caplog.text.count("Traceback") == 1
    assert rejected == [400, 400]


def test_metrics_count_per_bucket_and_model():
    import prometheus_client as pc

    m = Metrics()
    rec = Recommendation(["i1"], [1.0], fallback=True, stage="popularity")
    served = [Served(f"q{i}", "u1", "feed", "control", "m:1", rec) for i in range(3)]
    served.append(Served("q9", "u2", "feed", "treatment", "m:2", rec))
    for s in served:
        m.served(s, 0.02)
    m.batch(served)
    m.error(400)
    text = pc.generate_latest().decode()
    assert 'sidflow_requests_total{bucket="control",model="m:1"} 3.0' in text
    assert 'sidflow_fallbacks_total{bucket="treatment",model="m:2"} 1.0' in text
    assert (
        'sidflow_request_latency_seconds_bucket{bucket="control",le="0.025",model="m:1"} 3.0'
        in text
        or (
            'sidflow_request_latency_seconds_bucket{bucket="control",model="m:1",le="0.025"} 3.0'
            in text
        )
    )
    assert 'sidflow_beam_batch_size_count{model="m:1"} 1.0' in text
    assert 'sidflow_request_errors_total{bucket="-",model="-",status="400"} 1.0' in text
