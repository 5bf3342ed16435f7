"""The same create_pipeline compiles to a Kubeflow Pipelines v2 / Vertex pipeline spec, with no network."""

import json
import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during KFP compile")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_kubeflow_v2_spec_compiles_offline(tmp_path, no_network):
    from training.runners import kubeflow_v2_runner

    out = tmp_path / "pipeline.json"
    spec = kubeflow_v2_runner.compile_pipeline(
        str(out), pipeline_root="gs://bucket/root", data_root="gs://bucket/data", encoder_path="gs://bucket/enc",
        serving_model_dir="gs://bucket/serving_model", profile="default", image="example.com/scorer:1",
        beam_pipeline_args=["--runner=DataflowRunner", "--region=europe-west1"])
    assert out.exists()
    assert spec == json.loads(out.read_text())
    text = out.read_text()
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for name in ("ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataValidationGate",
                 "Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher"):
        assert any(t.startswith(name) for t in tasks), (name, sorted(tasks))
    assert "training.model.run_fn" in text and "training.preprocessing.preprocessing_fn" in text
    assert "DataflowRunner" in text and "example.com/scorer:1" in text
