"""The scorer image (``deploy/scorer.Dockerfile``) built and run as users run it, against the tests' Apache Kafka.

* ``worker`` (the image's default command, a pool of one process per core) scores a stream with nothing lost under a
  read-only root file system; its HEALTHCHECK turns healthy; ``docker stop`` ends it with exit 0 and every input
  offset committed; its log is JSON lines only.
* ``serve`` in the same image answers TF Serving REST and the Open Inference Protocol v2.
* A bad setting gives the one-line error and a non-zero exit from the container too.
* The image runs as a non-root user, carries no pip or compilers, and declares its health check and stop signal.
Containers use the host's network (``--network host``), so all traffic stays on loopback.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.docker_engine import docker, exit_code, remove, wait_healthy
from tests.harness import _free_port, avro_messages, produce, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

RUN = ["--network", "host", "--read-only", "--tmpfs", "/tmp"]  # the deployment shape: nothing written but /tmp


def test_worker_image_scores_a_stream_and_stops_cleanly(
    scorer_image: str, kafka_broker: Any, topic_factory: Any, mounted_models: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    in_topic = topic_factory(kafka_broker, partitions=2)
    out_topic, dlq_topic = topic_factory(kafka_broker, partitions=2), topic_factory(kafka_broker)
    group, port, name = f"g-{in_topic}", _free_port(), f"scorer-worker-{uuid.uuid4().hex[:8]}"
    records = [{"id": f"m-{i:04d}", "text": "a fine film" if i % 2 else "a dull film"} for i in range(300)]
    produce(bootstrap, in_topic, avro_messages(records))
    env = {
        "SCORER_BOOTSTRAP_SERVERS": bootstrap,
        "SCORER_INPUT_TOPIC": in_topic,
        "SCORER_OUTPUT_TOPIC": out_topic,
        "SCORER_DEAD_LETTER_TOPIC": dlq_topic,
        "SCORER_GROUP_ID": group,
        "SCORER_METRICS_PORT": str(port),
    }
    flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    docker("run", "-d", "--name", name, *RUN, "-v", f"{mounted_models}:/models/sentiment:ro", *flags, scorer_image)
    try:
        wait_healthy(name)
        got = read_topic(bootstrap, out_topic, lambda r: len({x.key for x in r}) >= len(records), timeout_s=300)
        assert {r.key for r in got} == {r["id"].encode() for r in records}, "every message scored"
        stopped = docker("stop", "-t", "60", name, timeout=120)
        assert stopped.returncode == 0
        assert exit_code(name) == 0, docker("logs", "--tail", "30", name).stderr
        logs = docker("logs", name)
    finally:
        remove(name)
    assert not read_topic(bootstrap, dlq_topic, lambda r: False, timeout_s=3), "nothing dead-lettered"
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), "JSON lines only:\n" + "\n".join(lines[:20])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(in_topic, p) for p in (0, 1)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=30)}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(in_topic, p), timeout=30)[1] for p in (0, 1)}
    finally:
        consumer.close()
    assert committed == ends, f"every offset committed at stop: {committed} vs end offsets {ends}"


def post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        return dict(json.load(answer))


def test_serve_in_the_same_image_answers_both_protocols(scorer_image: str, mounted_models: Path) -> None:
    port, name = _free_port(), f"scorer-serve-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, *RUN, "-e", f"SCORER_PORT={port}",
           "-v", f"{mounted_models}:/models/sentiment:ro", scorer_image, "serve")  # fmt: skip
    try:
        wait_healthy(name)
        tfs = post(port, "/v1/models/sentiment:predict", {"instances": ["a wonderful film", "an awful film"]})
        assert len(tfs["predictions"]) == 2
        oip = post(port, "/v2/models/sentiment/infer",
                   {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}]})  # fmt: skip
        assert {o["name"] for o in oip["outputs"]} >= {"score"}
        docker("stop", "-t", "60", name, timeout=120)
        assert exit_code(name) == 0
    finally:
        remove(name)


def test_bad_setting_is_one_line_and_a_non_zero_exit(scorer_image: str) -> None:
    answer = docker("run", "--rm", "--network", "none", scorer_image, "worker", "--max-batch-size", "-3", check=False)
    assert answer.returncode != 0
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scorer: error:"), answer.stderr


def test_image_is_non_root_without_build_tools(scorer_image: str) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", scorer_image).stdout)
    assert config["User"] not in ("", "0", "root", "0:0")
    assert config["StopSignal"] == "SIGTERM" and config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Entrypoint"] == ["scorer"] and config["Cmd"] == ["worker"]
    # The scorer's environment has no pip (the base image's own is the base's business); no compiler anywhere.
    probe = (
        "import os, shutil, sys; "
        "sys.exit(os.path.exists('/opt/scorer/bin/pip') or any(shutil.which(t) for t in ('gcc', 'cc')))"
    )
    answer = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", scorer_image, "-c", probe,
                    check=False)  # fmt: skip
    assert answer.returncode == 0, "pip in the scorer's environment, or a compiler in the image"
