"""``scorer serve``: model-as-a-service over HTTP, on the same engine as the Kafka worker.

Two protocols, so clients of TF Serving and of KServe/Triton/MLServer switch without changes:

* TF Serving REST (``/v1/models/{name}[/versions/{v}]``, ``:predict`` row and columnar formats, ``:classify``,
  ``/metadata``), errors as ``{"error": "..."}``;
* Open Inference Protocol v2 (``/v2``, ``/v2/health/{live,ready}``, ``/v2/models/{name}[/versions/{v}][/ready]``,
  ``.../infer`` with a BYTES input tensor, outputs ``score`` FP32 and ``label`` BYTES, request ``id`` echoed).

Every request goes through the guard the Kafka path uses (empty, too long, invalid UTF-8 → 400 naming the input
index), then into the shared engine (``engine/inference.py``): batched with other requests by length, one
inference thread. Overload is an answer, not a crash: a full queue → 429 at once, a deadline → 504, a large body →
413. The anonymization guard runs as on the Kafka path (``--pii-policy``; ``reject`` → 422 naming the kinds per
input index). Texts are never logged. Why FastAPI on uvicorn: a well-kept ASGI stack whose request models give the
OpenAPI document (``/openapi.json``) that clients and the schemathesis test read, with async handlers that wait on
the engine's futures without a thread per request.

Modules: ``service.py`` (the state behind the routes), ``tfserving.py`` and ``oip.py`` (one protocol's routes
each; they depend on the service only), this module (the app: assembles both, errors, limits, operations routes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_worker.common.errors import ModelError
from stream_worker.common.metrics import Metrics
from stream_worker.common.settings import ServeSettings
from stream_worker.engine.inference import open_engine
from stream_worker.pipeline.guard import Guard
from stream_worker.serve import oip, tfserving
from stream_worker.serve.service import ApiError, Service, timing_for_this_request

log = logging.getLogger(__name__)


def create_app(settings: ServeSettings, metrics: Metrics | None = None) -> FastAPI:
    service = Service(settings, metrics or Metrics())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        loop = asyncio.get_running_loop()
        engine, watcher, precision = await loop.run_in_executor(
            None, lambda: open_engine(settings, service.metrics, max_queue=settings.max_queue)
        )
        service.engine = engine
        service.guard = Guard(settings.max_text_bytes, *engine.scorer.shape(settings.max_sequence_tokens))
        service.metrics.ready = True
        log.info(
            "server ready",
            extra={"model_version": engine.scorer.version, "precision": precision, "port": settings.port},
        )
        try:
            yield
        finally:
            service.metrics.ready = False
            watcher.stop()
            engine.stop()

    app = FastAPI(
        title="kafka-sentiment-scorer",
        summary="Sentiment model-as-a-service (TF Serving REST + OIP v2)",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(
            {"error": f"invalid request: {where or 'body'}: {first.get('msg', 'malformed')}"}, status_code=400
        )

    app.add_middleware(_CountAndTime, service=service, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(_JsonBodies, max_body_bytes=settings.max_body_bytes)
    tfserving.add_routes(app, service)
    oip.add_routes(app, service)
    _operations_routes(app, service)
    return app


def _operations_routes(app: FastAPI, service: Service) -> None:
    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        ready = service.metrics.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


class _CountAndTime:
    """Pure ASGI middleware (no extra task per request, unlike Starlette's ``@app.middleware``): refuses a body whose
    declared length is over ``max_body_bytes`` (413), counts requests by route and status, observes their latency,
    and adds ``X-Queue-Time`` / ``X-Inference-Time`` (ms: queue wait and model time of the slowest input, as TEI
    does) to answers that scored something."""

    def __init__(self, app: Any, service: Service, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                body = JSONResponse({"error": f"request body over max_body_bytes={self.max_body_bytes}"}, 413)
                await body(scope, receive, send)
                return
        started = time.perf_counter()
        timing = timing_for_this_request()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if timing:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-queue-time", f"{timing['queue_ms']:.1f}".encode()),
                        (b"x-inference-time", f"{timing['inference_ms']:.1f}".encode()),
                    ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self.service.requests.labels(route=name, status=str(status)).inc()
            self.service.latency.labels(route=name).observe(time.perf_counter() - started)


class _JsonBodies:
    """ASGI middleware: every POST body is JSON whatever its content-type (``curl -d`` sends a form type, and TF
    Serving accepts that), and a body without a length that grows past ``max_body_bytes`` is cut off with 413."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise ApiError(413, f"request body over max_body_bytes={self.max_body_bytes}")
            return message

        await self.app(scope, counted, send)


def _check_port(host: str, port: int) -> None:
    import socket

    from stream_worker.common.errors import ConfigError

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}; choose another --port"
            ) from exc


def serve(settings: ServeSettings) -> None:
    """Run the server until SIGTERM/SIGINT (uvicorn handles the signals and drains connections)."""
    import uvicorn

    from stream_worker.engine.model_repo import require_servable

    require_servable(settings.model_dir, settings.model_version)
    _check_port(settings.host, settings.port)
    app = create_app(settings)

    class _Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (the exit status then says 'killed');
        ``scorer serve`` finishes what is in flight and exits 0, like ``scorer worker``."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            getattr(self, "_captured_signals", []).clear()

    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when the port is taken or start-up failed
        raise ModelError(f"the server could not start on {settings.host}:{settings.port}") from exc
