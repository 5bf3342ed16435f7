"""Decode stage: Kafka message value → ``TextRecord``.

Accepted encodings (``Settings.input_format``):

* ``avro`` — Avro binary of ``schemas/text_message.avsc``.  Values that start with the Confluent Schema
  Registry magic byte (``0x00`` + 4-byte schema id) are recognised.  With a registry (``--schema-registry-url``)
  the body is read with the writer schema the id names and resolved to ours (``registry.py``): an unknown id is
  ``UnknownSchemaId``, a schema that does not resolve ``IncompatibleSchema``, a registry that does not answer
  ``RegistryUnavailable`` (not bad input: the worker holds the message and retries).  Without one, the 5-byte
  prefix is stripped and the body is read with our schema.  Because a plain record whose ``id`` is empty also
  starts with ``0x00``, framed decoding is tried first and plain decoding second.
* ``json`` — a UTF-8 JSON object with at least ``id`` and ``text`` strings.

A ``content-type`` header, when present, must name one of these formats; anything else is dead-lettered as
``unsupported_content_type`` rather than guessed at.  Errors are ``BadMessage`` subclasses (see ``errors``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stream_worker.common.errors import (
    DecodeError,
    InvalidUtf8,
    SchemaMismatch,
    UnknownSchemaId,
    UnsupportedContentType,
)
from stream_worker.pipeline.avro import INPUT_SCHEMA, AvroDecoder, load_schema

if TYPE_CHECKING:  # the registry serde is imported only when a registry is configured (it costs ~1 s to import)
    from stream_worker.pipeline.registry import RegistryReader

CONFLUENT_MAGIC = 0
_AVRO_TYPES = ("avro/binary", "application/avro", "application/vnd.kafka.avro.v2+avro")
_JSON_TYPES = ("application/json", "json")


@dataclass(frozen=True, slots=True)
class TextRecord:
    """One decoded input message. ``text`` is user data: never log it."""

    id: str
    text: str
    produced_at_ms: int | None = None
    lang: str | None = None
    schema_id: int | None = None


class Decoder:
    """``decoder(value, content_type) -> TextRecord`` for the configured input format."""

    def __init__(
        self,
        input_format: Literal["avro", "json"],
        schema_dir: Path | None = None,
        registry: RegistryReader | None = None,
    ) -> None:
        self._format = input_format
        self._avro = AvroDecoder(load_schema(INPUT_SCHEMA, schema_dir))
        self._registry = registry

    def __call__(self, value: bytes, content_type: str | None = None) -> TextRecord:
        fmt = self._format if content_type is None else _format_of(content_type)
        if fmt == "json":
            return _from_json(value)
        return self._from_avro(value)

    def _from_avro(self, value: bytes) -> TextRecord:
        if len(value) >= 5 and value[0] == CONFLUENT_MAGIC:
            (schema_id,) = struct.unpack(">I", value[1:5])
            if self._registry is not None:
                try:
                    return _from_mapping(self._registry(value), schema_id=schema_id)
                except (UnknownSchemaId, SchemaMismatch) as exc:
                    return self._plain_or(value, exc)  # a plain record whose id is "" also starts with 0x00
            try:
                return _from_mapping(self._avro(value[5:]), schema_id=schema_id)
            except DecodeError:
                pass  # not framed after all: a plain record whose id is "" also starts with 0x00
        return _from_mapping(self._avro(value))

    def _plain_or(self, value: bytes, framed_error: DecodeError) -> TextRecord:
        """The value as a plain record, or the framed reading's error when it is not one either."""
        try:
            return _from_mapping(self._avro(value))
        except DecodeError:
            raise framed_error from None


def _format_of(content_type: str) -> Literal["avro", "json"]:
    base = content_type.split(";", 1)[0].strip().lower()
    if base in _AVRO_TYPES:
        return "avro"
    if base in _JSON_TYPES:
        return "json"
    raise UnsupportedContentType("content-type header names a format this worker does not read")


def _from_json(value: bytes) -> TextRecord:
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8("JSON value is not valid UTF-8") from exc
    try:
        obj = json.loads(decoded)
    except ValueError as exc:
        raise DecodeError(f"not a JSON document (line {getattr(exc, 'lineno', '?')})") from exc
    if not isinstance(obj, dict):
        raise SchemaMismatch("JSON value is not an object")
    return _from_mapping(obj)


def _from_mapping(obj: dict[str, Any], schema_id: int | None = None) -> TextRecord:
    msg_id, text = obj.get("id"), obj.get("text")
    if not isinstance(msg_id, str):
        raise SchemaMismatch("field 'id' is missing or not a string")
    if text is not None and not isinstance(text, str):
        raise SchemaMismatch("field 'text' is not a string")
    lang = obj.get("lang")
    return TextRecord(
        id=msg_id,
        text=text or "",
        produced_at_ms=_millis(obj.get("produced_at")),
        lang=lang if isinstance(lang, str) else None,
        schema_id=schema_id,
    )


def _millis(value: object) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
