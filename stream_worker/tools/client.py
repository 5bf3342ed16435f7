"""Small clients behind ``scorer produce`` and ``scorer tail`` (and the demo).

They use only the public contract: the ``.avsc`` files and Kafka.  Producers and consumers of other teams can do
the same with plain confluent-kafka + fastavro (see the README's integration example).  With a Schema Registry
(``--schema-registry-url``) ``produce`` frames each record with its registered schema id (confluent-kafka's
``AvroSerializer``) and ``tail`` reads framed scores with the writer schema their id names (``AvroDeserializer``).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from stream_worker.common.errors import ConfigError, DeliveryError, SchemaMismatch
from stream_worker.common.registry_settings import RegistrySettings
from stream_worker.pipeline.avro import (
    INPUT_SCHEMA,
    OUTPUT_SCHEMA,
    AvroDecoder,
    AvroEncoder,
    load_schema,
    schema_text,
)
from stream_worker.pipeline.connect import check_cluster

# librdkafka's own lines (connection retries) would interleave with the command's output; failures are reported
# once, as an error naming the cluster.
_client_log = logging.getLogger("stream_worker.librdkafka.client")
_client_log.propagate = False
_client_log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class BadLine:
    """An input line ``scorer produce`` refuses: where (``file:line``) and why (never the line's text)."""

    where: str
    reason: str


def read_texts(source: str, limit: int = 0) -> tuple[list[dict[str, str]], list[BadLine]]:
    """All ``{"id", "text"}`` items of a JSONL file, a CSV file (``id``/``text`` columns) or stdin lines, and the
    lines that are not valid items.  Everything is read and checked before anything is published."""
    good: list[dict[str, str]] = []
    bad: list[BadLine] = []
    for item in _read(source):
        if isinstance(item, BadLine):
            bad.append(item)
        elif not limit or len(good) < limit:
            good.append(item)
    return good, bad


def _read(source: str) -> Iterator[dict[str, str] | BadLine]:
    if source == "-":
        for number, line in enumerate(sys.stdin, start=1):
            if line.strip():
                yield {"id": f"stdin-{number}", "text": line.rstrip("\n")}
        return
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                yield from _read_jsonl(path, handle)
            else:
                yield from _read_csv(path, handle)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_jsonl(path: Path, handle: Iterable[str]) -> Iterator[dict[str, str] | BadLine]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError:
            yield BadLine(where, "not valid JSON")
            continue
        if not isinstance(obj, dict):
            yield BadLine(where, "not a JSON object")
        elif "text" not in obj:
            yield BadLine(where, "no 'text' field")
        elif not isinstance(obj["text"], str):
            yield BadLine(where, "'text' is not a string")
        else:
            yield {"id": str(obj.get("id") or f"{path.stem}-{number}"), "text": obj["text"]}


def _read_csv(path: Path, handle: Iterable[str]) -> Iterator[dict[str, str] | BadLine]:
    reader = csv.DictReader(handle)
    try:
        if "text" not in (reader.fieldnames or []):
            yield BadLine(f"{path}:1", "the header has no 'text' column")
            return
        for number, row in enumerate(reader, start=1):
            where = f"{path}:{reader.line_num}"
            if None in row:
                yield BadLine(where, "more fields than the header")
            elif row.get("text") is None:
                yield BadLine(where, "fewer fields than the header (no 'text' value)")
            else:
                yield {"id": str(row.get("id") or f"{path.stem}-{number}"), "text": row["text"]}
    except csv.Error as exc:
        yield BadLine(f"{path}:{reader.line_num}", f"unreadable CSV ({exc})")


def publish_texts(
    bootstrap_servers: str,
    topic: str,
    items: Iterable[dict[str, str]],
    input_format: str = "avro",
    timeout_s: float = 30.0,
    registry: RegistrySettings | None = None,
) -> int:
    """Publish ``items`` keyed by id; returns how many the broker acknowledged."""
    encode = input_encoder(topic, registry)
    items = list(items)
    values = []  # encoded first: a registry that refuses or does not answer stops the run before anything is sent
    for item in items:
        record = {"id": item["id"], "text": item["text"], "produced_at": int(time.time() * 1000)}
        values.append(json.dumps(record).encode() if input_format == "json" else encode(record))
    check_cluster({"bootstrap.servers": bootstrap_servers}, timeout_s)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "acks": "all",
            "message.timeout.ms": int(timeout_s * 1000),
            "logger": _client_log,
        }
    )
    failures: list[str] = []
    acked = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is not None:
            failures.append(str(err))
        else:
            acked += 1

    for item, value in zip(items, values, strict=True):
        while True:
            try:
                producer.produce(topic, key=item["id"].encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout_s + 5)
    if failures or remaining:
        first = f", first: {failures[0]}" if failures else ""
        raise DeliveryError(
            f"{len(items) - acked} of {len(items)} messages not acknowledged by {bootstrap_servers}{first}"
        )
    return acked


def input_encoder(topic: str, registry: RegistrySettings | None) -> Any:
    """Plain Avro, or (with a registry URL) registry-framed Avro under the configured subject strategy."""
    if registry is None or not registry.schema_registry_url:
        return AvroEncoder(load_schema(INPUT_SCHEMA))
    from stream_worker.pipeline.registry import RegistryFramer, open_client  # ~1 s to import: only with a registry

    framer = RegistryFramer(open_client(registry), schema_text(INPUT_SCHEMA), registry)
    return lambda record: framer.frame(record, topic)


class ScoreDecoder:
    """``decoder(value) -> dict`` for score records: plain Avro, or registry-framed (read with the writer schema its
    id names when a registry is given; else the frame is stripped and our schema reads the body)."""

    def __init__(self, registry: RegistrySettings | None = None, client: Any = None) -> None:
        self._plain = AvroDecoder(load_schema(OUTPUT_SCHEMA))
        self._framed: Any = None
        if client is None and registry is not None and registry.schema_registry_url:
            from stream_worker.pipeline.registry import open_client  # ~1 s to import: only with a registry

            client = open_client(registry)
        if client is not None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            self._framed = AvroDeserializer(client, schema_text(OUTPUT_SCHEMA))

    def __call__(self, value: bytes) -> dict[str, Any]:
        if len(value) <= 5 or value[0] != 0:
            return self._plain(value)
        try:
            if self._framed is None:
                return self._plain(value[5:])
            record: dict[str, Any] = self._framed(value, None)
            return record
        except Exception as exc:
            from stream_worker.pipeline.registry import unavailable

            down = unavailable(exc)
            if down is not None:
                raise down from exc
            try:  # not framed after all: a plain record whose id is "" also starts with 0x00
                return self._plain(value)
            except Exception:
                raise SchemaMismatch(f"not a score record ({type(exc).__name__}: {exc})"[:300]) from exc


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


def read_scores(
    consumer: Consumer, timeout_s: float = 1.0, max_messages: int = 500, decode: ScoreDecoder | None = None
) -> list[dict[str, Any]]:
    """Decode one poll's worth of score records (adds ``key``)."""
    decode = decode or ScoreDecoder()
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
    registry: RegistrySettings | None = None,
) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    decode = ScoreDecoder(registry)
    consumer = score_consumer(bootstrap_servers, topic, from_beginning)
    seen, last = 0, time.monotonic()
    try:
        while not max_messages or seen < max_messages:
            batch = read_scores(consumer, 0.5, decode=decode)
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
