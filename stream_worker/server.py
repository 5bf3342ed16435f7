"""``scorer serve``: model-as-a-service over HTTP, on the same engine as the Kafka worker.

Two protocols, so clients of TF Serving and of KServe/Triton/MLServer switch without changes:

* TF Serving REST (``/v1/models/{name}[/versions/{v}]``, ``:predict`` row and columnar formats, ``:classify``,
  ``/metadata``), errors as ``{"error": "..."}``;
* Open Inference Protocol v2 (``/v2``, ``/v2/health/{live,ready}``, ``/v2/models/{name}[/versions/{v}][/ready]``,
  ``.../infer`` with a BYTES input tensor, outputs ``score`` FP32 and ``label`` BYTES, request ``id`` echoed).

Every request goes through the guard the Kafka path uses (empty, too long, invalid UTF-8 → 400 naming the input
index), then into the shared engine (``engine.py``): batched with other requests by length, one inference thread.
Overload is an answer, not a crash: a full queue → 429 at once, a deadline → 504, a large body → 413.  The
anonymization guard runs as on the Kafka path (``--pii-policy``; ``reject`` → 422 naming the kinds per input
index).  Texts are never logged.  Why FastAPI on uvicorn: a well-kept ASGI stack whose request models give the
OpenAPI document (``/openapi.json``) that clients and the schemathesis test read, with async handlers that wait
on the engine's futures without a thread per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from .decode import TextRecord
from .engine import Engine, Overloaded, Scored, open_engine
from .errors import BadMessage, ModelError, ScoringFailed
from .guard import Checked, Guard
from .metrics import Metrics
from .pii import PiiScanner, apply_policy
from .settings import ServeSettings

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- request bodies (their schemas are the OpenAPI document) ---------------------------------------------------
class TextObject(BaseModel):
    text: str


class PredictRequest(BaseModel):
    """TF Serving predict: row format ``instances`` or columnar format ``inputs`` (exactly one of them)."""

    signature_name: str | None = None
    instances: list[str | TextObject] | None = None
    inputs: list[str] | dict[str, list[str]] | None = None


class ClassifyRequest(BaseModel):
    signature_name: str | None = None
    examples: list[TextObject]


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[dict[str, Any]] | None = None


class Service:
    """The state behind the routes: settings, engine, guard, metrics."""

    def __init__(self, settings: ServeSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine: Engine | None = None
        self.guard = Guard(settings.max_text_bytes, settings.max_sequence_tokens)
        self.pii = PiiScanner() if settings.pii_policy != "off" else None
        r = metrics.registry
        self.requests = Counter(
            "scorer_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "scorer_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    @property
    def version(self) -> str:
        return self.engine.scorer.version if self.engine is not None else ""

    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.settings.model_name:
            raise ApiError(404, f"Servable not found for request: Latest({name})")
        if version is not None and version != self.version:
            raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")

    async def score(self, texts: list[Any]) -> list[Scored]:
        """Guard every input (400 naming the index), submit all, await all within the request deadline."""
        if not texts:
            raise ApiError(400, "no inputs")
        if len(texts) > self.settings.max_texts_per_request:
            raise ApiError(400, f"{len(texts)} inputs; at most {self.settings.max_texts_per_request} per request")
        checked = []
        found: list[str] = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ApiError(400, f"input {index}: not a string")
            try:
                ok = self.guard(TextRecord(str(index), text))
            except BadMessage as exc:
                raise ApiError(400, f"input {index}: {exc.reason}: {exc}") from None
            if self.pii is not None:
                policy = self.settings.pii_policy
                pii = apply_policy(text, policy, self.pii)
                for kind, count in pii.counts:
                    self.metrics.pii_findings.labels(kind=kind, policy=policy).inc(count)
                if pii.rejected:
                    found.append(f"input {index}: {pii.header}")
                ok = Checked(TextRecord(ok.record.id, pii.text), ok.tokens)
            checked.append(ok)
        if found:
            raise ApiError(422, "pii_detected: personal data found (kinds per input): " + "; ".join(found))
        if self.engine is None:
            raise ApiError(503, "model not loaded yet")
        try:
            futures = [asyncio.wrap_future(self.engine.submit(c.record.text, c.tokens)) for c in checked]
        except Overloaded as exc:
            raise ApiError(429, f"overloaded: {exc}") from None
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), self.settings.request_timeout_ms / 1000)
        except TimeoutError:
            raise ApiError(504, f"no answer within request_timeout_ms={self.settings.request_timeout_ms}") from None
        out = []
        for index, result in enumerate(results):
            if isinstance(result, ScoringFailed):
                raise ApiError(400, f"input {index}: {result.reason}: {result}")
            out.append(result)
        return out


def _label(score: float) -> str:
    return "POSITIVE" if score >= 0.5 else "NEGATIVE"


def _tensor_meta() -> dict[str, Any]:
    dim = {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    return {
        "inputs": {"text": {"dtype": "DT_STRING", "tensor_shape": dim, "name": "serving_default_text:0"}},
        "outputs": {
            "score": {"dtype": "DT_FLOAT", "tensor_shape": dim, "name": "StatefulPartitionedCall:1"},
            "label": {"dtype": "DT_STRING", "tensor_shape": dim, "name": "StatefulPartitionedCall:0"},
        },
        "method_name": "tensorflow/serving/predict",
    }


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

    @app.middleware("http")
    async def guard_and_count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse({"error": f"request body over max_body_bytes={settings.max_body_bytes}"}, 413)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        service.requests.labels(route=name, status=str(response.status_code)).inc()
        service.latency.labels(route=name).observe(time.perf_counter() - started)
        return response

    app.add_middleware(_JsonBodies, max_body_bytes=settings.max_body_bytes)
    _tf_serving_routes(app, service)
    _oip_routes(app, service)
    _operations_routes(app, service)
    return app


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


def _tf_serving_routes(app: FastAPI, service: Service) -> None:
    def status(name: str, version: str | None) -> dict[str, Any]:
        service.check_model(name, version)
        return {
            "model_version_status": [
                {"version": service.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        }

    def metadata(name: str, version: str | None) -> dict[str, Any]:
        service.check_model(name, version)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": service.version},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: _tensor_meta()}}},
        }

    async def predict(name: str, version: str | None, body: PredictRequest) -> dict[str, Any]:
        service.check_model(name, version)
        if body.signature_name not in (None, "", SIGNATURE):
            raise ApiError(400, f"signature {body.signature_name!r} not found; this model has {SIGNATURE!r}")
        if (body.instances is None) == (body.inputs is None):
            raise ApiError(400, "give exactly one of 'instances' (row format) or 'inputs' (columnar format)")
        if body.instances is not None:
            texts = [i.text if isinstance(i, TextObject) else i for i in body.instances]
            scored = await service.score(texts)
            return {"predictions": [{"score": s.score, "label": _label(s.score)} for s in scored]}
        inputs = body.inputs
        if isinstance(inputs, dict):
            if set(inputs) != {"text"}:
                raise ApiError(400, f"inputs must name exactly the input 'text', got {sorted(inputs)}")
            inputs = inputs["text"]
        assert inputs is not None
        scored = await service.score(list(inputs))
        return {"outputs": {"score": [s.score for s in scored], "label": [_label(s.score) for s in scored]}}

    async def classify(name: str, version: str | None, body: ClassifyRequest) -> dict[str, Any]:
        service.check_model(name, version)
        scored = await service.score([e.text for e in body.examples])
        return {"result": [[["NEGATIVE", 1.0 - s.score], ["POSITIVE", s.score]] for s in scored]}

    app.get("/v1/models/{name}", tags=["TF Serving"])(lambda name: status(name, None))
    app.get("/v1/models/{name}/versions/{version}", tags=["TF Serving"])(status)
    app.get("/v1/models/{name}/metadata", tags=["TF Serving"])(lambda name: metadata(name, None))
    app.get("/v1/models/{name}/versions/{version}/metadata", tags=["TF Serving"])(metadata)

    @app.post("/v1/models/{name}:predict", tags=["TF Serving"])
    async def predict_latest(name: str, body: PredictRequest) -> dict[str, Any]:
        return await predict(name, None, body)

    @app.post("/v1/models/{name}/versions/{version}:predict", tags=["TF Serving"])
    async def predict_version(name: str, version: str, body: PredictRequest) -> dict[str, Any]:
        return await predict(name, version, body)

    @app.post("/v1/models/{name}:classify", tags=["TF Serving"])
    async def classify_latest(name: str, body: ClassifyRequest) -> dict[str, Any]:
        return await classify(name, None, body)

    @app.post("/v1/models/{name}/versions/{version}:classify", tags=["TF Serving"])
    async def classify_version(name: str, version: str, body: ClassifyRequest) -> dict[str, Any]:
        return await classify(name, version, body)


def _oip_routes(app: FastAPI, service: Service) -> None:
    def model_meta(name: str, version: str | None = None) -> dict[str, Any]:
        service.check_model(name, version)
        return {
            "name": name,
            "versions": [service.version],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "score", "datatype": "FP32", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ],
        }

    def model_ready(name: str, version: str | None = None) -> JSONResponse:
        service.check_model(name, version)
        ready = service.metrics.ready
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

    async def infer(name: str, version: str | None, body: InferRequest) -> dict[str, Any]:
        service.check_model(name, version)
        if len(body.inputs) != 1 or body.inputs[0].name != "text":
            raise ApiError(400, "expected exactly one input tensor named 'text'")
        tensor = body.inputs[0]
        if tensor.datatype != "BYTES":
            raise ApiError(400, f"input 'text' must have datatype BYTES, not {tensor.datatype}")
        if len(tensor.shape) != 1 or tensor.shape[0] != len(tensor.data):
            raise ApiError(400, f"input 'text' shape {tensor.shape} does not match its {len(tensor.data)} values")
        scored = await service.score(tensor.data)
        outputs = [
            {"name": "score", "datatype": "FP32", "shape": [len(scored)], "data": [s.score for s in scored]},
            {"name": "label", "datatype": "BYTES", "shape": [len(scored)], "data": [_label(s.score) for s in scored]},
        ]
        wanted = {o.get("name") for o in body.outputs or []}
        if wanted - {"score", "label"}:
            raise ApiError(400, f"unknown outputs requested: {sorted(str(w) for w in wanted - {'score', 'label'})}")
        if wanted:
            outputs = [o for o in outputs if o["name"] in wanted]
        answer: dict[str, Any] = {"model_name": name, "model_version": service.version, "outputs": outputs}
        if body.id is not None:
            answer["id"] = body.id
        return answer

    @app.get("/v2", tags=["Open Inference Protocol v2"])
    def server_meta() -> dict[str, Any]:
        return {"name": "kafka-sentiment-scorer", "version": "1", "extensions": []}

    @app.get("/v2/health/live", tags=["Open Inference Protocol v2"])
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol v2"])
    def ready() -> JSONResponse:
        return JSONResponse({"ready": service.metrics.ready}, status_code=200 if service.metrics.ready else 503)

    app.get("/v2/models/{name}", tags=["Open Inference Protocol v2"])(lambda name: model_meta(name))
    app.get("/v2/models/{name}/versions/{version}", tags=["Open Inference Protocol v2"])(model_meta)
    app.get("/v2/models/{name}/ready", tags=["Open Inference Protocol v2"])(lambda name: model_ready(name))
    app.get("/v2/models/{name}/versions/{version}/ready", tags=["Open Inference Protocol v2"])(model_ready)

    @app.post("/v2/models/{name}/infer", tags=["Open Inference Protocol v2"])
    async def infer_latest(name: str, body: InferRequest) -> dict[str, Any]:
        return await infer(name, None, body)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["Open Inference Protocol v2"])
    async def infer_version(name: str, version: str, body: InferRequest) -> dict[str, Any]:
        return await infer(name, version, body)


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


def _check_port(host: str, port: int) -> None:
    import socket

    from .errors import ConfigError

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

    from .model_repo import require_servable

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
