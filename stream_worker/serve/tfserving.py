"""The routes of ``scorer serve``: TF Serving REST, Open Inference Protocol v2, operations (see ``server.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from stream_worker.serve.app import ApiError, Service

SIGNATURE = "serving_default"


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


def add_routes(app: FastAPI, service: Service) -> None:
    _tf_serving_routes(app, service)
    _oip_routes(app, service)
    _operations_routes(app, service)


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
