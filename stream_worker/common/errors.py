"""Every exception the worker raises, in one tree.

::

    ScorerError                      base of everything below
    ├── ConfigError                  bad settings / missing schema / bad properties file   (raise at start)
    ├── ModelError                   no model version, unloadable files                     (raise at start)
    │   ├── ModelContractError       serving_default is not the contract
    │   └── WarmupFailed             the warm-up batch failed
    ├── InfrastructureError          broker or producer failure: the worker stops, offsets stay uncommitted
    │   ├── DeliveryError            a produced record was not acknowledged by the broker
    │   └── RegistryUnavailable      the Schema Registry did not answer: the worker holds the message, pauses
    │                                consumption and retries with backoff (never dead-letters, never stops)
    └── BadMessage                   the message itself is bad: data, not a crash → dead-letter topic
        ├── DecodeError              bytes are not a record of the expected format
        │   ├── InvalidUtf8          a string field is not valid UTF-8
        │   └── SchemaMismatch       decodes, but not as our schema (trailing bytes, wrong types)
        ├── UnsupportedContentType   a ``content-type`` header names a format we do not read
        ├── InvalidText              decoded, but nothing we can score
        │   ├── EmptyText            missing, empty, whitespace or control characters only
        │   ├── TextTooLong          larger than ``max_text_bytes``
        │   └── PiiDetected          still holds personal data and the policy is ``reject`` (kinds only)
        └── ScoringFailed            the model rejected this one text (found by bisecting a failed batch)

Only ``BadMessage`` subclasses are caught by the main loop and turned into dead-letter records; each carries a
short machine ``reason`` that becomes the ``scorer.errors.reason`` header and the metrics label.  Messages of
these exceptions never contain message text.
"""

from __future__ import annotations


class ScorerError(Exception):
    """Base class of all errors raised by the scorer."""


class ConfigError(ScorerError):
    """Settings are inconsistent or a configured file cannot be used."""


class ModelError(ScorerError):
    """The model repository or a SavedModel cannot be used; ``reason`` labels refused rollouts in metrics."""

    reason = "load"


class ModelContractError(ModelError):
    """The SavedModel loads but its ``serving_default`` is not the contract (one 1-D string input, a score)."""

    reason = "contract"


class WarmupFailed(ModelError):
    """The maximum-size warm-up batch failed or gave scores outside [0, 1]."""

    reason = "warmup"


class InfrastructureError(ScorerError):
    """The broker or client failed; retrying the same message would not help. The worker stops."""


class DeliveryError(InfrastructureError):
    """The broker did not acknowledge a produced record."""


class RegistryUnavailable(InfrastructureError):
    """The Schema Registry did not answer (connection refused, timeout, 5xx).  Not the message's fault: the worker
    keeps the message, pauses consumption and retries; it is never dead-lettered."""


class BadMessage(ScorerError):
    """The message is bad data. It goes to the dead-letter topic and the worker continues."""

    reason = "bad_message"
    stage = "GUARD"


class DecodeError(BadMessage):
    reason = "decode_error"
    stage = "DECODE"


class InvalidUtf8(DecodeError):
    reason = "invalid_utf8"


class SchemaMismatch(DecodeError):
    reason = "schema_mismatch"


class UnknownSchemaId(DecodeError):
    reason = "unknown_schema_id"


class IncompatibleSchema(DecodeError):
    reason = "incompatible_schema"


class UnsupportedContentType(DecodeError):
    reason = "unsupported_content_type"


class InvalidText(BadMessage):
    reason = "invalid_text"


class EmptyText(InvalidText):
    reason = "empty_text"


class TextTooLong(InvalidText):
    reason = "text_too_long"


class PiiDetected(InvalidText):
    """Residual personal data under ``pii_policy=reject``; the message names the kinds, never the values."""

    reason = "pii_detected"

    def __init__(self, kinds: str) -> None:
        super().__init__(f"personal data found: {kinds}")
        self.kinds = kinds


class ScoringFailed(BadMessage):
    reason = "scoring_failed"
    stage = "SCORE"
