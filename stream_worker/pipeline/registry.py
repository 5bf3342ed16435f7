"""Schema Registry stage helpers: registry-framed Avro in and out, with confluent-kafka's client and Avro serde.

Input (``RegistryReader``), for a value framed as magic byte 0 + 4-byte schema id + Avro body:

1. the writer schema is fetched by id from the registry once per id per process (the client caches it, up to
   ``schema_cache_size``), then
2. the body is read with that writer schema and resolved to our reader schema (``text_message.avsc``) by Avro's
   resolution rules: fields the producer added are skipped, fields it removed get our defaults, so any
   compatible evolution of the producer's schema scores unchanged;
3. an id the registry does not know is bad input (``UnknownSchemaId``); a writer schema that cannot be resolved
   to ours (no ``text``, a type that does not promote) is bad input (``IncompatibleSchema``); a registry that
   does not answer is not the message's fault (``RegistryUnavailable``): the worker holds the message, pauses
   consumption and retries (``worker.py``).

Output (``RegistryFramer``): the ``SentimentScore`` schema is registered (or, with auto-registration off, the
subject's latest version is used) under the configured subject name strategy at start, and every score record is
framed with that id, so downstream consumers read it with any standard Avro deserializer.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, UnknownType

from stream_worker.common.errors import (
    ConfigError,
    IncompatibleSchema,
    InvalidUtf8,
    RegistryUnavailable,
    SchemaMismatch,
    UnknownSchemaId,
)
from stream_worker.common.metrics import Metrics
from stream_worker.common.registry_settings import RegistrySettings
from stream_worker.pipeline.hold import FIRST_RETRY_S, MAX_RETRY_S

try:  # the registry client's HTTP library (httpx2 where installed, else httpx): its errors are transport errors
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _http

    _TRANSPORT: tuple[type[BaseException], ...] = (_http.HTTPError, OSError)
except ImportError:  # pragma: no cover - a confluent-kafka without the compat module
    _TRANSPORT = (OSError,)

log = logging.getLogger(__name__)

STRATEGIES: dict[str, Callable[..., Any]] = {
    "topic": topic_subject_name_strategy,
    "record": record_subject_name_strategy,
    "topic-record": topic_record_subject_name_strategy,
}
_UNKNOWN_ID_CODES = (40403,)  # Confluent's error code for "schema not found" (Apicurio's ccompat API uses it too)


def open_client(settings: RegistrySettings) -> SchemaRegistryClient:
    try:
        return SchemaRegistryClient.new_client(settings.registry_client_config())  # mock:// URLs: the mock client
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad Schema Registry settings: {exc}") from exc


def unavailable(exc: BaseException) -> RegistryUnavailable | None:
    """The ``RegistryUnavailable`` that ``exc`` (or an exception it was raised from) means, or None when it is not
    about reaching the registry (serde wrappers chain the HTTP client's error)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        found = _unavailable(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


def _unavailable(exc: BaseException) -> RegistryUnavailable | None:
    if isinstance(exc, _TRANSPORT):
        return RegistryUnavailable(f"Schema Registry unreachable ({type(exc).__name__})")
    if isinstance(exc, SchemaRegistryError) and (
        exc.http_status_code in (401, 403, 408, 429) or exc.http_status_code >= 500 or exc.http_status_code < 0
    ):
        return RegistryUnavailable(f"Schema Registry answered HTTP {exc.http_status_code}")
    return None


class RegistryReader:
    """``reader(value) -> dict``: a registry-framed Avro value, resolved to our reader schema."""

    def __init__(self, client: SchemaRegistryClient, reader_schema: str) -> None:
        self._deserialize = AvroDeserializer(client, reader_schema)

    def __call__(self, value: bytes) -> dict[str, Any]:
        try:
            record = self._deserialize(value, None)
        except SchemaRegistryError as exc:
            down = unavailable(exc)
            if down is not None:
                raise down from exc
            if exc.http_status_code == 404 or exc.error_code in _UNKNOWN_ID_CODES:
                raise UnknownSchemaId(f"schema id {_schema_id(value)} is not in the Schema Registry") from exc
            raise IncompatibleSchema(f"the registry refused schema id {_schema_id(value)} ({exc.error_code})") from exc
        except (SchemaResolutionError, SchemaParseException, UnknownType) as exc:
            raise IncompatibleSchema(
                f"writer schema id {_schema_id(value)} cannot be resolved to TextMessage ({type(exc).__name__})"
            ) from exc
        except UnicodeDecodeError as exc:
            raise InvalidUtf8("a string field is not valid UTF-8") from exc
        except Exception as exc:  # the HTTP library's errors (maybe wrapped by the serde), or a body that is cut short
            down = unavailable(exc)
            if down is not None:
                raise down from exc
            if not isinstance(exc, (SerializationError, EOFError, ValueError, IndexError, TypeError, OverflowError,
                                    KeyError)):  # fmt: skip
                raise
            problem = f"not a record of writer schema id {_schema_id(value)} ({type(exc).__name__})"
            raise SchemaMismatch(problem) from exc
        if not isinstance(record, dict):
            raise IncompatibleSchema(f"writer schema id {_schema_id(value)} is not a record")
        return record


class RegistryFramer:
    """``framer(record, topic) -> bytes``: a record framed with its schema's registered id (the worker's scores;
    ``scorer produce``'s inputs)."""

    def __init__(self, client: SchemaRegistryClient, schema: str, settings: RegistrySettings) -> None:
        conf = {
            "auto.register.schemas": settings.auto_register_schemas,
            "use.latest.version": not settings.auto_register_schemas,
            "subject.name.strategy": STRATEGIES[settings.subject_name_strategy],
        }
        self._serialize = AvroSerializer(client, schema, conf=conf)
        self.strategy = settings.subject_name_strategy
        self._name = json.loads(schema).get("name", "record")

    def __call__(self, record: dict[str, Any], topic: str) -> bytes:
        value: bytes = self._serialize(record, SerializationContext(topic, MessageField.VALUE))
        return value

    def register(self, topic: str, stop: threading.Event, metrics: Metrics) -> None:
        """Before consuming: register (or look up) the output schema, so no score waits for it later.  Retried with
        backoff while the registry does not answer (a worker may start before its registry); a refusal is a
        ``ConfigError``."""
        delay = FIRST_RETRY_S
        while not stop.is_set():
            try:
                schema_id = self.warm_up(_SAMPLE_SCORE, topic)
            except RegistryUnavailable as exc:
                metrics.failures.labels(kind=type(exc).__name__).inc()
                log.warning("schema registry unreachable at start; retrying", extra={"error": str(exc),
                                                                                    "retry_in_s": delay})  # fmt: skip
                stop.wait(delay)
                delay = min(MAX_RETRY_S, delay * 2)
                continue
            log.info("output schema registered", extra={"schema_id": schema_id, "strategy": self.strategy})
            return

    def frame(self, record: dict[str, Any], topic: str) -> bytes:
        """``self(record, topic)`` with the registry's failures named: ``RegistryUnavailable`` while it does not
        answer; ``ConfigError`` when it answers no (an incompatible schema under the subject, or no subject with
        auto-registration off)."""
        try:
            return self(record, topic)
        except Exception as exc:  # the serde raises its own, the client's and the HTTP library's errors
            down = unavailable(exc)
            if down is not None:
                raise down from exc
            detail = exc.error_message if isinstance(exc, SchemaRegistryError) else str(exc)
            problem = f"the Schema Registry refused the {self._name} schema ({self.strategy} strategy): {detail}"
            raise ConfigError(problem) from exc

    def warm_up(self, record: dict[str, Any], topic: str) -> int:
        """Register (or look up) the schema now, so that no record waits for it later; returns its id (errors as
        ``frame``)."""
        return int.from_bytes(self.frame(record, topic)[1:5], "big")


_SAMPLE_SCORE = {
    "id": "",
    "label": "NEGATIVE",
    "score": 0.0,
    "model_version": "",
    "scored_at": 0,
    "source_topic": "",
    "source_partition": 0,
    "source_offset": 0,
}


def _schema_id(value: bytes) -> int:
    return int.from_bytes(value[1:5], "big") if len(value) >= 5 else -1
