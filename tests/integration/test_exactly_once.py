"""``scorer worker --delivery exactly-once`` as users run it, on real Apache Kafka (and refused on tansu).

A ``read_committed`` reader must see every input's score exactly once (and each bad message exactly once in the
dead-letter topic) although worker processes are SIGKILLed mid-transaction and a second worker fences a first
one that uses the same transactional id.  A ``read_uncommitted`` reader of the same topic is counted too: the
aborted duplicates it sees show that the faults did hit open transactions (the test is not vacuous).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from tests.harness import SCORER, Record, start_worker_cli, user_env, wait_for
from tests.integration.test_pool_cli import children_of, scored_ids
from tests.toy_model import NEGATIVE, POSITIVE

pytestmark = pytest.mark.integration

WORDS = [*POSITIVE, *NEGATIVE, "plot", "scene", "the", "movie"]


def publish(bootstrap: str, topic: str, start: int, count: int, bad_every: int = 0, rate: float = 0.0) -> set[str]:
    """JSON inputs ``msg-<i>``; every ``bad_every``-th is not JSON (its key still names it). Returns bad ids."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    bad: set[str] = set()
    for i in range(start, start + count):
        key = f"msg-{i:06d}"
        if bad_every and i % bad_every == 0:
            value = b"{not json"
            bad.add(key)
        else:
            text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 20))
            value = json.dumps({"id": key, "text": text}).encode()
        producer.produce(topic, key=key.encode(), value=value)
        producer.poll(0)
        if rate:
            time.sleep(1.0 / rate)
    assert producer.flush(30) == 0
    return bad


def read_all(bootstrap: str, topic: str, isolation: str, expect: int, timeout_s: float = 120.0) -> list[Record]:
    """Every record of ``topic`` as seen with ``isolation.level=isolation`` (waits until ``expect`` are read, then
    drains a little longer so that duplicates would show)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline, quiet_until = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error() is None:
                    records.append(Record(m.key(), m.value(), dict(m.headers() or []), m.partition(), m.offset()))
            if len(records) >= expect:
                quiet_until = quiet_until or time.monotonic() + 3.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return records


def test_exactly_once_pool_survives_sigkills(
    kafka_broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    in_topic = topic_factory(kafka_broker, partitions=4)
    out_topic, dlq_topic = topic_factory(kafka_broker, partitions=2), topic_factory(kafka_broker)
    total = 6000
    log_path = tmp_path / "pool.log"
    pool, port = start_worker_cli(
        bootstrap,
        (in_topic, out_topic, dlq_topic),
        toy_model_dir,
        log_path,
        "--processes",
        "2",
        "--delivery",
        "exactly-once",
        "--input-format",
        "json",
        "--commit-interval-ms",
        "500",
    )
    bad: set[str] = set()
    feeder = threading.Thread(target=lambda: bad.update(publish(bootstrap, in_topic, 0, total, 97, rate=400.0)))
    feeder.start()
    try:
        for kill in range(3):  # SIGKILL a child mid-stream three times; the supervisor restarts it
            wait_for(lambda: len(children_of(pool.pid)) == 2, 120, "two children")
            time.sleep(2.5)
            os.kill(children_of(pool.pid)[kill % 2], signal.SIGKILL)
        feeder.join()
        good = total - len(bad)
        committed = read_all(bootstrap, out_topic, "read_committed", good, timeout_s=480)
        dead = read_all(bootstrap, dlq_topic, "read_committed", len(bad))
        uncommitted = read_all(bootstrap, out_topic, "read_uncommitted", good)
    finally:
        pool.send_signal(signal.SIGTERM)
        code = pool.wait(timeout=150)
    log_text = log_path.read_text(errors="replace")
    ids = scored_ids(committed)
    expected = {f"msg-{i:06d}" for i in range(total)} - bad
    lost = expected - set(ids)
    duplicated = {k: n for k, n in ids.items() if n > 1}
    assert not lost, (len(lost), sorted(lost)[:10], log_text[-3000:])
    assert not duplicated, (len(duplicated), list(duplicated.items())[:10])
    assert set(ids) == expected
    dead_keys = Counter((m.key or b"").decode() for m in dead)
    assert set(dead_keys) == bad and all(n == 1 for n in dead_keys.values()), dead_keys
    assert all(m.headers["scorer.errors.reason"] for m in dead)
    assert code == 0, log_text[-3000:]
    assert "Traceback" not in log_text
    # Faults hit open transactions: the uncommitted view holds at least as much (aborted records included).
    assert len(uncommitted) >= len(committed)
    print(f"read_committed {len(committed)} records, read_uncommitted {len(uncommitted)} (aborted included)")
    del port


def test_zombie_is_fenced(
    kafka_broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path
) -> None:
    """Two workers with one transactional id: the newer fences the older, which exits with one clear line."""
    bootstrap = kafka_broker.bootstrap_servers
    in_topic = topic_factory(kafka_broker, partitions=2)
    out_topic, dlq_topic = topic_factory(kafka_broker), topic_factory(kafka_broker)
    topics = (in_topic, out_topic, dlq_topic)
    flags = ("--delivery", "exactly-once", "--input-format", "json", "--transactional-id", f"tx-{in_topic}")
    publish(bootstrap, in_topic, 0, 500)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first, _ = start_worker_cli(bootstrap, topics, toy_model_dir, first_log, *flags)
    second, _ = start_worker_cli(bootstrap, topics, toy_model_dir, second_log, *flags)
    try:
        feeder = threading.Thread(target=publish, args=(bootstrap, in_topic, 500, 1500), kwargs={"rate": 300.0})
        feeder.start()
        wait_for(lambda: first.poll() is not None, 300, "the fenced worker to exit")
        feeder.join()
        committed = read_all(bootstrap, out_topic, "read_committed", 2000, timeout_s=300)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
    first_text = first_log.read_text(errors="replace")
    assert first.returncode == 1, first_text[-2000:]
    error_lines = [line for line in first_text.splitlines() if line.startswith("scorer: error:")]
    assert len(error_lines) == 1 and "fenced" in error_lines[0].lower() + first_text.lower(), first_text[-2000:]
    assert "Traceback" not in first_text
    ids = scored_ids(committed)
    assert set(ids) == {f"msg-{i:06d}" for i in range(2000)}
    assert max(ids.values()) == 1, [k for k, n in ids.items() if n > 1][:10]


def test_exactly_once_is_refused_on_tansu(tansu_broker: Any, toy_model_dir: Path) -> None:
    for processes in ("1", "2"):
        proc = subprocess.run(
            [
                SCORER,
                "worker",
                "--delivery",
                "exactly-once",
                "--processes",
                processes,
                "--bootstrap-servers",
                tansu_broker.bootstrap_servers,
                "--model-dir",
                str(toy_model_dir),
                "--metrics-port",
                "0",
            ],
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("scorer: error: --delivery exactly-once needs Apache Kafka"), proc.stderr[-2000:]
        assert "tansu" in last and "Traceback" not in proc.stderr
