"""Open Inference Protocol v2 routes of ``scorer serve`` (KServe, Triton, MLServer clients): ``/v2``,
``/v2/health/{live,ready}``, ``/v2/models/{name}[/versions/{v}][/ready]`` and ``.../infer`` with a BYTES input
tensor ``text``, outputs ``score`` (FP32) and ``label`` (BYTES), the request ``id`` echoed.  They depend on the
service only."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stream_worker.serve.service import ApiError, Service, label_of


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[dict[str, Any]] | None = None


def add_routes(app: FastAPI, service: Service) -> None:
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
            {"name": "label", "datatype": "BYTES", "shape": [len(scored)], "data": [label_of(s.score) for s in scored]},
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
