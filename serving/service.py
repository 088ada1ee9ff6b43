"""sidflow's BentoML service: `bentoml serve serving.service:Sidflow` (`make serve`).

POST /recommend {user_id, scene, k, history?} -> items with scores, the A/B bucket, the model
tag, the SID version, a request_id and the candidates path (nearline: the bundle's precomputed
beam output, live: a beam search now); every answer is appended to the exposure log.
`serving.workers` processes each load the bundles (one torch thread each).
POST /metadata -> the promoted and candidate versions with their SID versions and metrics.
/healthz, /livez and /readyz come with BentoML; /readyz is 503 until a promoted bundle loads.
Requests that queue while a pass runs are answered together by the next beam-search pass
(at most `serving.max_batch`; `MicroBatcher`): no added wait when the service is idle,
batches as large as the load under load. `serving.batch_wait_ms` > 0 adds a wait for more.
Malformed input is rejected by the pydantic model with a 400 naming the field, logged as one
WARNING line (`serving/telemetry.py`). /metrics (BentoML's) also carries sidflow's metrics per
bucket and model: requests, errors, latency, fallbacks, beam batch sizes.
"""

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import bentoml
import torch
from pydantic import Field
from pydantic_core import to_json
from starlette.responses import Response

import sidflow  # noqa: F401  (telemetry off)
from serving.ab import override
from serving.recommender import Request, Served
from serving.router import NoModelError, ServingApp
from serving.telemetry import Metrics, install_bad_request_log, process_metrics
from sidflow.config import load_params

PARAMS = load_params()
SP = PARAMS.serving
Scene = Literal[tuple(PARAMS.data.scenes)]  # type: ignore[valid-type]
Id = Annotated[str, Field(min_length=1, max_length=SP.max_id_length, pattern=r"^[\w.:-]+$")]
QA_BUCKET_HEADER = "x-sidflow-bucket"
QA_TOKEN_HEADER = "x-sidflow-qa-token"


K = Annotated[int, Field(ge=1, le=SP.max_k)]
History = Annotated[list[Id], Field(max_length=SP.max_history)]


@dataclass
class BatchTiming:
    """Where one request's time went inside the service (the `Server-Timing` header)."""

    queue_ms: float  # queued until its pass started
    handle_ms: float  # the pass: `ServingApp.handle` (model, features, log) and the thread hop
    batch: int  # requests answered by that pass


class MicroBatcher:
    """Collects concurrent requests and answers them with one `ServingApp.handle` call.

    Continuous batching: a pass takes every request that queued while the previous pass
    ran (up to `max_batch`), then waits at most `wait_ms` more for others.
    """

    def __init__(
        self, app: ServingApp, wait_ms: float, max_batch: int, metrics: Metrics | None = None
    ):
        self.app, self.wait, self.max_batch = app, wait_ms / 1000.0, max_batch
        self.metrics = metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: asyncio.Task | None = None

    async def submit(self, req: Request, bucket: str | None) -> tuple[Served, BatchTiming]:
        """Queue one request; resolves when its batch is served."""
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((req, bucket, fut, time.perf_counter()))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            reqs, buckets, futs, queued = zip(*batch, strict=True)
            try:
                t0 = time.perf_counter()
                served = await asyncio.to_thread(self.app.handle, list(reqs), None, list(buckets))
                handle_ms = (time.perf_counter() - t0) * 1e3
                if self.metrics is not None:
                    self.metrics.batch(served)
                for fut, s, q in zip(futs, served, queued, strict=True):
                    fut.set_result((s, BatchTiming((t0 - q) * 1e3, handle_ms, len(batch))))
            except Exception as err:  # noqa: BLE001 - every waiting request gets the error
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(err)


UNTRACED = {} if SP.trace_recommend else {"tracing": {"excluded_urls": ["/recommend"]}}


@bentoml.service(
    name="sidflow",
    http={"port": SP.port},
    traffic={"timeout": 30},
    workers=SP.workers,  # processes: one torch thread each (serving.torch_threads)
    **UNTRACED,
)
class Sidflow:
    """Retriever + ranker behind A/B buckets, with exposure logging."""

    def __init__(self) -> None:
        torch.set_num_threads(SP.torch_threads)
        self.metrics = (
            process_metrics()
        )  # here, not at import: the worker's Prometheus set-up is done
        install_bad_request_log(self.metrics.error)  # a 400 is one WARNING line, no traceback
        self.app = ServingApp(PARAMS)
        self.batcher = MicroBatcher(self.app, SP.batch_wait_ms, SP.max_batch, self.metrics)

    def __is_ready__(self) -> bool:
        return self.app.ready()

    @bentoml.api(route="/recommend")
    async def recommend(
        self,
        user_id: Id,
        scene: Scene,
        ctx: bentoml.Context,
        k: K = 10,
        history: History | None = None,
    ) -> dict:
        """Recommendations for one user in one scene (bounds from params.yaml `serving:`)."""
        t_in = time.perf_counter()
        headers = ctx.request.headers
        forced = None
        if headers.get(QA_BUCKET_HEADER):
            bucket = override(SP, headers.get(QA_BUCKET_HEADER), headers.get(QA_TOKEN_HEADER))
            if bucket is None:
                self.metrics.error(403)
                ctx.response.status_code = 403
                return {"error": f"{QA_BUCKET_HEADER} needs a valid {QA_TOKEN_HEADER}"}
            forced = bucket.name
        try:
            s, timing = await self.batcher.submit(
                Request(user_id, scene, k, list(history or [])), forced
            )
        except NoModelError as err:
            self.metrics.error(503)
            ctx.response.status_code = 503
            return {"error": str(err)}
        except Exception:
            self.metrics.error(500)
            raise  # BentoML answers 500 and logs the traceback
        version = self.app.state()
        sid = next(
            (
                v.get("sid_version")
                for v in (version.get("promoted"), version.get("candidate"))
                if v and v["tag"] == s.model
            ),
            None,
        )
        # Server-Timing (W3C): queue wait, the batched pass, and all of this handler
        ctx.response.headers["server-timing"] = (
            f"queue;dur={timing.queue_ms:.2f}, handle;dur={timing.handle_ms:.2f}, "
            f"api;dur={(time.perf_counter() - t_in) * 1e3:.2f}, batch;desc={timing.batch}"
        )
        body = {
            "request_id": s.request_id,
            "user_id": s.user_id,
            "scene": s.scene,
            "bucket": s.bucket,
            "model": s.model,
            "sid_version": sid,
            "stage": s.rec.stage,
            "fallback": s.rec.fallback,
            "candidates": s.rec.candidates,  # nearline (precomputed beam) | live | "" (fallback)
            "items": [
                {"item_id": i, "score": round(x, 6)}
                for i, x in zip(s.rec.items, s.rec.scores, strict=True)
            ],
        }
        self.metrics.served(s, time.perf_counter() - t_in)
        # Serialised here: BentoML's generic path rebuilds the output's JSON schema on every
        # response (~1 ms on this CPU); a Response is sent as it is.
        return Response(to_json(body), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict:
        """Promoted and candidate versions (tags, SID versions, windows, gated metrics)."""
        state = self.app.state()
        slim = {k: v for k, v in state.items() if k in ("promoted", "candidate")}
        return {
            "buckets": [b.model_dump() for b in SP.buckets],
            "pid": os.getpid(),
            "torch_threads": torch.get_num_threads(),
            **slim,
        }
