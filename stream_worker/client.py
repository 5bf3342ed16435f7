"""Small clients behind ``scorer produce`` and ``scorer tail`` (and the demo).

They use only the public contract: the ``.avsc`` files and Kafka.  Producers and consumers of other teams can do
the same with plain confluent-kafka + fastavro (see the README's integration example).
"""

from __future__ import annotations

import csv
import json
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from .avro import INPUT_SCHEMA, OUTPUT_SCHEMA, AvroDecoder, AvroEncoder, load_schema
from .errors import ConfigError, DeliveryError


def iter_texts(source: str, limit: int = 0) -> Iterator[dict[str, str]]:
    """``{"id", "text"}`` dicts from a JSONL file, a CSV file (``id``/``text`` columns) or stdin lines."""
    for count, item in enumerate(_read(source), start=1):
        yield item
        if limit and count >= limit:
            return


def _read(source: str) -> Iterable[dict[str, str]]:
    if source == "-":
        for number, line in enumerate(sys.stdin, start=1):
            if line.strip():
                yield {"id": f"stdin-{number}", "text": line.rstrip("\n")}
        return
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    obj = json.loads(line)
                    yield {"id": str(obj.get("id", f"{path.stem}-{number}")), "text": str(obj["text"])}
        else:
            for number, row in enumerate(csv.DictReader(handle), start=1):
                yield {"id": str(row.get("id") or f"{path.stem}-{number}"), "text": row["text"]}


def publish_texts(
    bootstrap_servers: str, topic: str, items: Iterable[dict[str, str]], input_format: str = "avro"
) -> int:
    """Publish ``items`` keyed by id; returns how many the broker acknowledged."""
    encode = AvroEncoder(load_schema(INPUT_SCHEMA))
    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "linger.ms": 20, "compression.type": "lz4", "acks": "all"}
    )
    failures: list[str] = []
    acked = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is not None:
            failures.append(str(err))
        else:
            acked += 1

    for item in items:
        record = {"id": item["id"], "text": item["text"], "produced_at": int(time.time() * 1000)}
        value = json.dumps(record).encode() if input_format == "json" else encode(record)
        while True:
            try:
                producer.produce(topic, key=item["id"].encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    if failures:
        raise DeliveryError(f"{len(failures)} messages not acknowledged, first: {failures[0]}")
    return acked


def score_consumer(bootstrap_servers: str, topic: str, from_beginning: bool = True) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"scorer-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
            # tansu completes a first group join after about half the session timeout: keep it short.
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    return consumer


def read_scores(consumer: Consumer, timeout_s: float = 1.0, max_messages: int = 500) -> list[dict[str, Any]]:
    """Decode one poll's worth of score records (adds ``key`` and the ``scorer.model.version`` header)."""
    decode = AvroDecoder(load_schema(OUTPUT_SCHEMA))
    out = []
    for msg in consumer.consume(num_messages=max_messages, timeout=timeout_s):
        value, key = msg.value(), msg.key()
        if msg.error() or value is None:
            continue
        record = decode(value)
        record["key"] = key.decode("utf-8", "replace") if key else None
        out.append(record)
    return out


def tail_scores(
    bootstrap_servers: str,
    topic: str,
    from_beginning: bool,
    max_messages: int,
    idle_timeout: float,
    as_json: bool,
) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    consumer = score_consumer(bootstrap_servers, topic, from_beginning)
    seen, last = 0, time.monotonic()
    try:
        while not max_messages or seen < max_messages:
            batch = read_scores(consumer, 0.5)
            if not batch:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    break
                continue
            last = time.monotonic()
            for record in batch:
                seen += 1
                if as_json:
                    print(json.dumps(record, default=str), flush=True)
                else:
                    colour = "green" if record["label"] == "POSITIVE" else "red"
                    console.print(
                        f"[dim]{record['source_partition']}:{record['source_offset']}[/] {record['id']:<24} "
                        f"[{colour}]{record['label']:<8} {record['score']:.3f}[/] v{record['model_version']}"
                    )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
