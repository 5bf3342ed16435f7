"""TF Serving REST routes of ``scorer serve``: ``/v1/models/{name}[/versions/{v}]`` (status), ``/metadata``,
``:predict`` (row ``instances`` or columnar ``inputs``) and ``:classify``.  They depend on the service only."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from stream_worker.serve.service import ApiError, Service, label_of

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
            return {"predictions": [{"score": s.score, "label": label_of(s.score)} for s in scored]}
        inputs = body.inputs
        if isinstance(inputs, dict):
            if set(inputs) != {"text"}:
                raise ApiError(400, f"inputs must name exactly the input 'text', got {sorted(inputs)}")
            inputs = inputs["text"]
        assert inputs is not None
        scored = await service.score(list(inputs))
        return {"outputs": {"score": [s.score for s in scored], "label": [label_of(s.score) for s in scored]}}

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
