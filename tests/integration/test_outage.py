"""A broker outage is logged, not stormed (issue 10, item 3), with ``scorer worker`` as a user runs it.

One Apache Kafka node is SIGKILLed under a running worker for about 10 s and restarted on the same ports and data
directory.  Checked: nothing is lost (every input published before and after the outage is scored), the worker
writes only a bounded number of warning lines meanwhile (librdkafka reconnects several times a second; repeated
client errors are rate-limited per kind), librdkafka's own lines never reach stderr raw (they are JSON log lines
of logger ``librdkafka``), and ``/readyz``'s body and ``/metrics`` show the broker down, then up again.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from tests.brokers import KafkaBroker, _java, new_topic
from tests.harness import http_get, metric_value, produce, read_topic, start_worker_cli, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0
MAX_WARNINGS_DURING_OUTAGE = 50  # a storm was ~1,000 lines per worker for a 10 s outage
_RAW_LIBRDKAFKA = re.compile(r"^%\d+\|[\d.]+\|")


class RestartableKafka(KafkaBroker):
    """``KafkaBroker`` that can be SIGKILLed and started again on the same ports and data directory."""

    def kill(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(30)
        self._proc = None

    def restart(self) -> None:
        assert self._proc is None and self.workdir is not None and self.libs_dir is not None
        jvm = [
            _java(),
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{self.libs_dir}/*",
        ]
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self.workdir / "server.properties")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(time.monotonic())


@pytest.fixture
def restartable_kafka() -> Iterator[RestartableKafka]:
    broker = RestartableKafka()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _messages(start: int, count: int) -> list[tuple[bytes, bytes, None]]:
    out = []
    for n in range(start, start + count):
        key = f"out-{n:04d}"
        out.append((key.encode(), json.dumps({"id": key, "text": f"a great and moving film {n}"}).encode(), None))
    return out


def _ids(records: list[Any]) -> set[str]:
    schema = load_schema(OUTPUT_SCHEMA)
    return {fastavro.schemaless_reader(io.BytesIO(r.value or b""), schema, None)["id"] for r in records}


def _kafka_view(port: int) -> dict[str, Any]:
    status, body = http_get(port, "/readyz")
    if status == 0:
        return {}
    data: dict[str, Any] = json.loads(body).get("kafka", {})
    return data


def test_broker_outage_is_logged_not_stormed(
    restartable_kafka: RestartableKafka, toy_model_dir: Path, tmp_path: Path
) -> None:
    broker = restartable_kafka
    bootstrap = broker.bootstrap_servers
    topics = (new_topic(bootstrap, prefix="out-in"), new_topic(bootstrap, prefix="out-out"), new_topic(bootstrap))
    log_path = tmp_path / "worker.log"
    proc, port = start_worker_cli(
        bootstrap,
        topics,
        toy_model_dir,
        log_path,
        "--input-format",
        "json",
        "--commit-interval-ms",
        "500",
        "--kafka",
        "statistics.interval.ms=1000",
    )
    try:
        before, after = _messages(0, 40), _messages(40, 40)
        produce(bootstrap, topics[0], before)
        wait_for(lambda: len(_ids(read_topic(bootstrap, topics[1], lambda r: len(r) >= 40, 60))) >= 40, 300, "wave 1")
        wait_for(lambda: _kafka_view(port).get("brokers_up") == 1, 120, "broker up in /readyz")

        lines_before = len(log_path.read_text(errors="replace").splitlines())
        broker.kill()
        killed_at = time.monotonic()
        wait_for(lambda: _kafka_view(port).get("brokers_up") == 0, 120, "broker down in /readyz")
        down_view = _kafka_view(port)
        assert down_view["brokers_known"] == 1 and down_view["last_client_error"] is not None, down_view
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed_at)))
        broker.restart()
        lines_outage = log_path.read_text(errors="replace").splitlines()[lines_before:]

        produce(bootstrap, topics[0], after)
        wanted = {m[0].decode() for m in before + after}
        wait_for(
            lambda: _ids(read_topic(bootstrap, topics[1], lambda r: len(r) >= 80, 60)) >= wanted, 300, "all scored"
        )
        wait_for(lambda: _kafka_view(port).get("brokers_up") == 1, 120, "broker up again in /readyz")
        status, metrics = http_get(port, "/metrics")
        assert status == 200
        assert metric_value(metrics, "scorer_kafka_brokers_up") == 1
        errors = sum(
            float(line.rpartition(" ")[2])
            for line in metrics.splitlines()
            if line.startswith("scorer_kafka_client_errors_total{")
        )
        assert errors > 0, "the outage's client errors are counted"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output

    # librdkafka's lines are ours now: JSON, logger "librdkafka"; none raw on stderr
    records = []
    for line in output.splitlines():
        assert not _RAW_LIBRDKAFKA.match(line), line
        if line.startswith("{"):
            records.append(json.loads(line))
    assert any(r["logger"] == "librdkafka" and "facility" in r for r in records)

    noisy = [json.loads(line) for line in lines_outage if line.startswith("{")]
    warnings = [r for r in noisy if r["level"] in ("warning", "error")]
    assert 0 < len(warnings) < MAX_WARNINGS_DURING_OUTAGE, "\n".join(json.dumps(r) for r in warnings[:80])
