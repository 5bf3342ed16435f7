"""``docker-compose.yml`` brought up as the README says, with local stand-ins for the public Kafka and Prometheus
images (no image registry is reachable here; the stand-ins are configured the same way, see tests/deploy/).

Kafka (KRaft) → topic job → worker pool + serve → Prometheus, health-gated.  The test publishes reviews through the
host port, reads every score, queries ``serve`` over both protocols, checks Prometheus scrapes both, and tears down.
The file also validates against the compose specification's JSON schema (from compose-go, via the Go module proxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker_engine import (
    PROMETHEUS_STANDIN,
    REPO,
    build_kafka_standin,
    build_prometheus_standin,
    compose_command,
)
from tests.harness import _free_port, avro_messages, produce, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

# compose-go carries the compose specification's JSON schema (v2.17 asks for a newer Go than the machines' 1.26.8)
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"


def compose_schema() -> dict[str, Any]:
    answer = subprocess.run(["go", "mod", "download", "-json", COMPOSE_GO], capture_output=True, text=True,
                            timeout=300, cwd=REPO)  # fmt: skip
    assert answer.returncode == 0, f"go mod download {COMPOSE_GO}: {answer.stderr or answer.stdout}"
    folder = Path(json.loads(answer.stdout)["Dir"])
    return dict(json.loads((folder / "schema" / "compose-spec.json").read_text()))


def test_compose_file_follows_the_compose_specification() -> None:
    import jsonschema

    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    jsonschema.validate(document, compose_schema())
    assert {"kafka", "topics", "worker", "serve", "prometheus"} <= set(document["services"])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def wait_for_value(probe: Any, timeout_s: float, what: str) -> Any:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last})")


def test_compose_stack_scores_serves_and_is_scraped(scorer_image: str, mounted_models: Path) -> None:
    kafka_image, prometheus_image = build_kafka_standin(), build_prometheus_standin()
    assert prometheus_image == PROMETHEUS_STANDIN
    ports = {name: _free_port() for name in ("KAFKA_HOST_PORT", "SERVE_HOST_PORT", "PROMETHEUS_HOST_PORT")}
    env = {
        **os.environ,
        "KAFKA_IMAGE": kafka_image,
        "PROMETHEUS_IMAGE": prometheus_image,
        "SCORER_IMAGE": scorer_image,
        "SCORER_MODELS": str(mounted_models.parent),
        **{name: str(port) for name, port in ports.items()},
    }
    project = f"scorer-test-{uuid.uuid4().hex[:8]}"
    compose = [*compose_command(), "-p", project, "-f", str(REPO / "docker-compose.yml")]

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)

    try:
        up = run("up", "-d", "--no-build")  # returns once every service is started in its health-gated order
        assert up.returncode == 0, f"compose up failed:\n{up.stdout[-3000:]}{up.stderr[-3000:]}"
        bootstrap = f"localhost:{ports['KAFKA_HOST_PORT']}"
        reviews = [{"id": f"r-{i:03d}", "text": "what a great film" if i % 3 else "dull and slow"} for i in range(60)]
        produce(bootstrap, "text-messages", avro_messages(reviews))
        got = read_topic(bootstrap, "sentiment-scores", lambda r: len({x.key for x in r}) >= len(reviews), 600)
        assert {r.key for r in got} == {r["id"].encode() for r in reviews}, "every review scored"

        serve = f"http://localhost:{ports['SERVE_HOST_PORT']}"
        wait_for_value(lambda: get_json(f"{serve}/v2/health/ready") is not None, 300, "serve to be ready")
        predictions = post_json(f"{serve}/v1/models/sentiment:predict", {"instances": ["loved it"]})["predictions"]
        assert len(predictions) == 1
        infer = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hated it"]}]}
        assert post_json(f"{serve}/v2/models/sentiment/infer", infer)["outputs"]

        prometheus = f"http://localhost:{ports['PROMETHEUS_HOST_PORT']}"
        query = urllib.parse.urlencode({"query": 'count by (job) ({__name__=~"scorer_.+"})'})

        def scraped_jobs() -> set[str]:
            result = get_json(f"{prometheus}/api/v1/query?{query}")["data"]["result"]
            jobs = {series["metric"]["job"] for series in result}
            return jobs if jobs >= {"scorer-worker", "scorer-serve"} else set()

        wait_for_value(scraped_jobs, 300, "Prometheus to hold scorer series from the worker pool and serve")
        ps = run("ps")
        assert "healthy" in ps.stdout, ps.stdout
    finally:
        logs = run("logs", "--no-color", "worker", timeout=120)
        down = run("down", "-v", "--remove-orphans", timeout=300)
    assert down.returncode == 0, down.stderr
    lines = [line.split("|", 1)[-1].strip() for line in logs.stdout.splitlines() if "|" in line]
    assert lines and all(line.startswith("{") for line in lines if line), "the worker logs JSON lines only"
