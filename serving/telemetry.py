"""Operations of the service: Prometheus metrics per bucket and model, one log line per 400.

Metrics (on BentoML's `/metrics`, beside its own `bentoml_service_*`):

| metric | type | labels |
|---|---|---|
| `sidflow_requests_total` | counter | bucket, model |
| `sidflow_request_errors_total` | counter | bucket, model, status (`-` where no bucket was chosen: a 400, a 503) |
| `sidflow_request_latency_seconds` | histogram | bucket, model (the handler's time, queue included) |
| `sidflow_fallbacks_total` | counter | bucket, model (popularity lists) |
| `sidflow_beam_batch_size` | histogram | model (requests per beam-search pass of a bundle) |

BentoML 1.4 runs its workers in Prometheus multiprocess mode and sets
`PROMETHEUS_MULTIPROC_DIR` while a worker starts, after the service module is imported;
`prometheus_client` picks its value store when it is imported, so the metrics are built in
`Metrics()` (called from the service's `__init__`), never at import time (the reason
`bentoml.metrics` defers its import; that module is deprecated in 1.4 in favour of
`prometheus_client` used this way).

A request that fails validation reaches BentoML's handler, which logs it as an ERROR with
the pydantic traceback; `BadRequestLog` turns that record into one WARNING line naming the
path, the fields and the reasons.
"""

from __future__ import annotations

import logging
from collections import Counter

from serving.recommender import Served

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs API exceptions
NO_BUCKET = "-"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's Prometheus metrics (build one per worker, after BentoML set it up)."""

    def __init__(self) -> None:
        import prometheus_client as pc  # deferred: see the module docstring

        self.requests = pc.Counter(
            "sidflow_requests", "Answered /recommend requests", ["bucket", "model"]
        )
        self.errors = pc.Counter(
            "sidflow_request_errors",
            "/recommend requests answered with an error status",
            ["bucket", "model", "status"],
        )
        self.latency = pc.Histogram(
            "sidflow_request_latency_seconds",
            "/recommend handler time, queue and batched pass included",
            ["bucket", "model"],
            buckets=LATENCY_BUCKETS,
        )
        self.fallbacks = pc.Counter(
            "sidflow_fallbacks", "Requests answered by the popularity fallback", ["bucket", "model"]
        )
        self.beam_batch = pc.Histogram(
            "sidflow_beam_batch_size",
            "Requests per beam-search pass of one bundle",
            ["model"],
            buckets=BATCH_BUCKETS,
        )

    def served(self, s: Served, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(s.bucket, s.model).inc()
        self.latency.labels(s.bucket, s.model).observe(seconds)
        if s.rec.fallback:
            self.fallbacks.labels(s.bucket, s.model).inc()

    def batch(self, served: list[Served]) -> None:
        """One `ServingApp.handle` pass: one beam search per bundle over its requests."""
        for model, n in Counter(s.model for s in served).items():
            self.beam_batch.labels(model).observe(n)

    def error(self, status: int, bucket: str = NO_BUCKET, model: str = NO_BUCKET) -> None:
        """Count one request answered with `status`."""
        self.errors.labels(bucket, model, str(status)).inc()


_METRICS: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's `Metrics` (Prometheus refuses a metric registered twice)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = Metrics()
    return _METRICS


def describe_rejection(exc: BaseException) -> tuple[int, str] | None:
    """(status, 'field: reason; ...') of a pydantic ValidationError (400) or a BentoML 4xx;
    None for anything else (a server error keeps its traceback)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors(include_context=False, include_input=False, include_url=False):
            field = ".".join(str(x) for x in e.get("loc", ())) or "body"
            parts.append(f"{field}: {e.get('msg', 'invalid')}")
        return 400, "; ".join(parts)
    if isinstance(exc, BentoMLException) and 400 <= int(exc.error_code) < 500:
        return int(exc.error_code), str(exc)
    return None


class BadRequestLog(logging.Filter):
    """Rewrites BentoML's ERROR-with-traceback for a rejected request (pydantic validation,
    a BentoML 4xx) into one WARNING line: `400 POST /recommend: user_id: String should
    match pattern ...`. Other records pass unchanged. `on_reject(status)` counts it."""

    def __init__(self, on_reject=None) -> None:  # noqa: ANN001 - Callable[[int], None]
        super().__init__()
        self.on_reject = on_reject

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        rejected = describe_rejection(exc) if exc is not None else None
        if rejected is None:
            return True
        status, reason = rejected
        args = record.args if isinstance(record.args, tuple) and len(record.args) >= 2 else "??"
        path, method = args[0], args[1]  # log_exception: "Exception on %s [%s]", path, method
        record.msg = "rejected request %s %s (%d): %s"
        record.args = (method, path, status, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        if self.on_reject is not None:
            self.on_reject(status)
        return True


def install_bad_request_log(on_reject=None) -> BadRequestLog:  # noqa: ANN001
    """Attach `BadRequestLog` to BentoML's HTTP logger (once per process)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    for f in logger.filters:
        if isinstance(f, BadRequestLog):
            f.on_reject = on_reject
            return f
    f = BadRequestLog(on_reject)
    logger.addFilter(f)
    return f
