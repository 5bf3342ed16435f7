"""Avro codecs: small callables that parse an ``.avsc`` once and then only encode or decode.

The schemas in ``schemas/`` are the public contract with producers and consumers; they are shipped inside the
wheel as ``stream_worker/_schemas`` and read from the repository's ``schemas/`` folder in a checkout.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from stream_worker.common.errors import ConfigError, InvalidUtf8, SchemaMismatch

INPUT_SCHEMA = "text_message.avsc"
OUTPUT_SCHEMA = "sentiment_score.avsc"


def default_schema_dir() -> Path:
    """The packaged schemas, or the checkout's ``schemas/`` folder."""
    package = Path(__file__).resolve().parents[1]  # stream_worker/
    for candidate in (package / "_schemas", package.parent / "schemas"):
        if (candidate / INPUT_SCHEMA).is_file():
            return candidate
    raise ConfigError("cannot find the Avro schemas; set SCORER_SCHEMA_DIR")


@cache
def load_schema(name: str, schema_dir: Path | None = None) -> dict[str, Any]:
    """Parse one ``.avsc`` file (cached: each schema is parsed once per process)."""
    path = (schema_dir or default_schema_dir()) / name
    try:
        parsed = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(f"cannot parse Avro schema {path}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"{path} is not an Avro record schema")
    return parsed


def schema_text(name: str, schema_dir: Path | None = None) -> str:
    """One ``.avsc`` file as text: what is registered in a Schema Registry."""
    path = (schema_dir or default_schema_dir()) / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read Avro schema {path}") from exc


class AvroEncoder:
    """``encoder(record) -> bytes`` in Avro binary (no container, no framing)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema

    def __call__(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._schema, record)
        return buf.getvalue()


class AvroDecoder:
    """``decoder(data) -> dict``; strict: every byte must belong to the record.

    Raises ``InvalidUtf8`` for a string that is not UTF-8 and ``SchemaMismatch`` for anything else that is not
    exactly one record of the schema (truncated data, trailing bytes, wrong types).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema

    def __call__(self, data: bytes) -> dict[str, Any]:
        buf = io.BytesIO(data)
        try:
            record = fastavro.schemaless_reader(buf, self._schema, None)
        except UnicodeDecodeError as exc:
            raise InvalidUtf8("a string field is not valid UTF-8") from exc
        except (EOFError, ValueError, IndexError, TypeError, OverflowError, MemoryError, KeyError) as exc:
            raise SchemaMismatch(f"not an Avro {self._schema.get('name')} record ({type(exc).__name__})") from exc
        if not isinstance(record, dict):
            raise SchemaMismatch(f"not an Avro {self._schema.get('name')} record")
        if buf.tell() != len(data):
            raise SchemaMismatch(
                f"{len(data) - buf.tell()} trailing bytes after an Avro {self._schema.get('name')} record"
            )
        return record
