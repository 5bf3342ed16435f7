"""``scorer serve`` as a user runs it (console script, real HTTP): every endpoint of both protocols, both TF Serving
request formats, the error answers, concurrency batching, and a property-based run of schemathesis against the
served OpenAPI document (no 5xx for any generated request).  No broker is involved."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream_worker.engine.score import Scorer
from stream_worker.tools.broker import free_port
from tests.harness import metric_value

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent


class Server:
    def __init__(self, model_dir: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
        self.log = log
        self.proc = subprocess.Popen(
            [
                str(BIN / "scorer"),
                "serve",
                "--model-dir",
                str(model_dir),
                "--port",
                str(self.port),
                "--precision",
                "fp32",
                *flags,
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300  # TensorFlow's import and the model's load and warm-up
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server not ready")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


@pytest.fixture(scope="module")
def server(toy_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        toy_model_dir,
        tmp_path_factory.mktemp("serve") / "server.log",
        "--max-wait-ms",
        "20",
        "--max-body-bytes",
        "65536",
    )
    yield srv
    assert srv.stop() == 0
    log = srv.log.read_text()
    assert "Traceback" not in log
    assert "a wonderful film" not in log and "dull" not in log  # texts are never logged


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, content=json.dumps(body), timeout=30)


def test_tf_serving_status_and_metadata(server: Server) -> None:
    for path in ("/v1/models/sentiment", "/v1/models/sentiment/versions/7"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200
        assert r.json()["model_version_status"] == [
            {"version": "7", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    for path in ("/v1/models/sentiment/metadata", "/v1/models/sentiment/versions/7/metadata"):
        meta = httpx.get(server.url + path).json()
        sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["inputs"]["text"]["dtype"] == "DT_STRING" and sig["outputs"]["score"]["dtype"] == "DT_FLOAT"
        assert meta["model_spec"] == {"name": "sentiment", "signature_name": "", "version": "7"}


def test_tf_serving_predict_row_columnar_and_classify(server: Server) -> None:
    for path in ("/v1/models/sentiment:predict", "/v1/models/sentiment/versions/7:predict"):
        r = post(server, path, {"instances": ["a wonderful film", {"text": "a dull, boring plot"}]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["label"] for p in preds] == ["POSITIVE", "NEGATIVE"] and preds[0]["score"] > 0.5
        # Where the milliseconds went, as TEI reports it: queue wait and model time of the slowest input.
        assert float(r.headers["X-Queue-Time"]) >= 0 and float(r.headers["X-Inference-Time"]) > 0
    r = post(
        server, "/v1/models/sentiment:predict", {"signature_name": "serving_default", "inputs": {"text": ["great"]}}
    )
    assert r.json()["outputs"]["label"] == ["POSITIVE"]
    r = post(server, "/v1/models/sentiment:predict", {"inputs": ["awful", "great"]})
    assert r.json()["outputs"]["label"] == ["NEGATIVE", "POSITIVE"]
    for path in ("/v1/models/sentiment:classify", "/v1/models/sentiment/versions/7:classify"):
        r = post(server, path, {"examples": [{"text": "great"}]})
        ((neg, pos),) = r.json()["result"]
        assert neg[0] == "NEGATIVE" and pos[0] == "POSITIVE" and abs(neg[1] + pos[1] - 1) < 1e-6 and pos[1] > 0.5


def test_open_inference_protocol(server: Server) -> None:
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(server.url + "/v2").json()["name"] == "kafka-sentiment-scorer"
    for path in ("/v2/models/sentiment", "/v2/models/sentiment/versions/7"):
        meta = httpx.get(server.url + path).json()
        assert meta["versions"] == ["7"] and meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    for path in ("/v2/models/sentiment/ready", "/v2/models/sentiment/versions/7/ready"):
        assert httpx.get(server.url + path).json() == {"name": "sentiment", "ready": True}
    body = {"id": "req-1", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}
    for path in ("/v2/models/sentiment/infer", "/v2/models/sentiment/versions/7/infer"):
        out = post(server, path, body).json()
        assert out["id"] == "req-1" and out["model_version"] == "7"
        score, label = out["outputs"]
        assert score["name"] == "score" and score["datatype"] == "FP32" and score["shape"] == [2]
        assert label["data"] == ["POSITIVE", "NEGATIVE"]
    only = post(server, "/v2/models/sentiment/infer", {**body, "outputs": [{"name": "label"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/models/sentiment:predict", "{not json", 400, "JSON"),
        ("POST", "/v1/models/sentiment:predict", {"instances": ["a"], "inputs": ["b"]}, 400, "exactly one"),
        ("POST", "/v1/models/sentiment:predict", {"instances": [5]}, 400, "instances.0"),
        ("POST", "/v1/models/sentiment:predict", {"instances": ["fine", ""]}, 400, "input 1: empty_text"),
        ("POST", "/v1/models/sentiment:predict", {"instances": ["\ud800"]}, 400, "input 0: invalid_utf8"),
        ("POST", "/v1/models/sentiment:predict", {"instances": []}, 400, "no inputs"),
        ("POST", "/v1/models/sentiment:predict", {"inputs": {"txt": ["a"]}}, 400, "'text'"),
        ("POST", "/v1/models/sentiment:predict", {"signature_name": "other", "instances": ["a"]}, 400, "signature"),
        ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404, "Latest(nope)"),
        ("POST", "/v1/models/sentiment/versions/3:predict", {"instances": ["a"]}, 404, "Specific(sentiment, 3)"),
        ("GET", "/v1/models/nope", None, 404, "nope"),
        ("GET", "/v2/models/sentiment/versions/3", None, 404, "3"),
        (
            "POST",
            "/v2/models/sentiment/infer",
            {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "shape",
        ),
        (
            "POST",
            "/v2/models/sentiment/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            400,
            "BYTES",
        ),
        (
            "POST",
            "/v2/models/sentiment/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [1]}]},
            400,
            "not a string",
        ),
        ("POST", "/v2/models/sentiment/infer", {"inputs": []}, 400, "inputs"),
        ("POST", "/v1/models/sentiment:predict", {"instances": ["x" * 70_000]}, 413, "max_body_bytes"),
    ],
)
def test_errors_are_answers(server: Server, method: str, path: str, body: Any, status: int, needle: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.request(method, server.url + path, content=content if body is not None else None, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_concurrent_requests_share_batches(server: Server, toy_model_dir: Path) -> None:
    texts = [("good " * (n % 5 + 1) + "bad " * (n % 3)).strip() for n in range(32)]
    before = metric_value(httpx.get(server.url + "/metrics").text, "scorer_batch_size_count")
    # Clients made first, then all requests leave together: a slow client must not spread them over time.
    start = threading.Barrier(len(texts))

    def call(text: str) -> float:
        with httpx.Client(timeout=30) as client:
            start.wait(300)
            r = client.post(server.url + "/v1/models/sentiment:predict", content=json.dumps({"instances": [text]}))
        assert r.status_code == 200, r.text
        return float(r.json()["predictions"][0]["score"])

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        got = list(pool.map(call, texts))
    batches = metric_value(httpx.get(server.url + "/metrics").text, "scorer_batch_size_count") - before
    assert batches < len(texts), f"{batches} model calls for {len(texts)} requests: no batching"
    expected = Scorer.load(toy_model_dir)(texts)
    assert max(abs(g - float(e)) for g, e in zip(got, expected, strict=True)) < 1e-6
    metrics = httpx.get(server.url + "/metrics").text
    assert metric_value(metrics, "scorer_http_requests_total", 'route="/v1/models/{name}:predict",status="200"') >= len(
        texts
    )


def test_full_queue_and_deadline(toy_model_dir: Path, tmp_path: Path) -> None:
    # Batches close only after 3 s (and a window of 64x32 texts): requests wait; the queue holds 2 texts.
    srv = Server(
        toy_model_dir,
        tmp_path / "slow.log",
        "--max-queue",
        "2",
        "--max-wait-ms",
        "3000",
        "--sort-window",
        "64",
        "--request-timeout-ms",
        "500",
    )
    try:
        started = time.monotonic()
        r = post(srv, "/v1/models/sentiment:predict", {"instances": ["a great film"]})
        assert r.status_code == 504 and "request_timeout_ms" in r.json()["error"]
        assert time.monotonic() - started < 2.5
        r = post(srv, "/v1/models/sentiment:predict", {"instances": ["one", "two", "three"]})
        assert r.status_code == 429 and "overloaded" in r.json()["error"]
    finally:
        assert srv.stop() == 0


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    proc = subprocess.run(
        [
            str(BIN / "st"),
            "--config-file",
            str(HERE / "data" / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "passed" in proc.stdout


def test_serve_flags_and_clear_errors(toy_model_dir: Path, tmp_path: Path) -> None:
    scorer = str(BIN / "scorer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    shown = subprocess.run(
        [scorer, "serve", "--print-settings", "--model-name", "reviews", "--port", "9000"],
        env={**env, "SCORER_MAX_QUEUE": "7", "SCORER_PORT": "8000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    settings = json.loads(shown.stdout)
    assert (settings["model_name"], settings["port"], settings["max_queue"]) == ("reviews", 9000, 7)
    missing = subprocess.run(
        [scorer, "serve", "--model-dir", str(tmp_path / "none")], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        taken = subprocess.run(
            [scorer, "serve", "--model-dir", str(toy_model_dir), "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert taken.returncode == 2 and f"cannot serve HTTP on 127.0.0.1:{port}" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_readme_rest_client_example(server: Server) -> None:
    """examples/rest_client.py (the README's plain `requests` client) against the running server."""
    repo = HERE.parent.parent
    proc = subprocess.run(
        [
            sys.executable,
            str(repo / "examples" / "rest_client.py"),
            "--url",
            server.url,
            "a wonderful film",
            "a dull, boring plot",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["protocol"], r["label"]) for r in rows] == [
        ("tf-serving", "POSITIVE"),
        ("tf-serving", "NEGATIVE"),
        ("oip-v2", "POSITIVE"),
        ("oip-v2", "NEGATIVE"),
    ]


def test_readme_curl_examples(server: Server) -> None:
    """The README's curl lines, as written (the URL swapped for this test's port)."""
    readme = (HERE.parent.parent / "README.md").read_text()
    lines = [ln.strip() for ln in readme.splitlines() if ln.strip().startswith("curl ")]
    assert len(lines) >= 4
    for line in lines:
        command = line.split("  #")[0].replace("http://127.0.0.1:8501", server.url)
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (command, proc.stderr)
        assert '"error"' not in proc.stdout, (command, proc.stdout)


def test_pii_reject_answers_422_with_kinds(toy_model_dir: Path, tmp_path: Path) -> None:
    srv = Server(toy_model_dir, tmp_path / "pii.log", "--pii-policy", "reject")
    try:
        r = post(
            srv,
            "/v1/models/sentiment:predict",
            {"instances": ["a great film", "mail me at jane.doe@mailbox.org", "call +44 20 7946 0958 now"]},
        )
        assert r.status_code == 422
        error = r.json()["error"]
        assert "input 1: EMAIL" in error and "input 2: PHONE" in error and "jane" not in error
        assert post(srv, "/v1/models/sentiment:predict", {"instances": ["great, see <EMAIL>"]}).status_code == 200
    finally:
        assert srv.stop() == 0
    assert "jane" not in (tmp_path / "pii.log").read_text()
