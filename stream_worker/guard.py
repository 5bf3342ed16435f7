"""Guard stage: check a decoded record before it may join a batch.

A text is rejected (→ dead-letter) when it is

* empty, or only whitespace / control / format characters / U+FFFD after decoding (``empty_text``): the model
  would score an empty sequence, which is a guess, not a score;
* larger than ``max_text_bytes`` UTF-8 bytes (``text_too_long``);
* not encodable as UTF-8, e.g. lone surrogates from a JSON ``\\ud800`` escape (``invalid_utf8``).

Accepted texts get a token estimate that the batcher uses for length sorting and its token budget.  The estimate
is deliberately cheap (no tokenizer in Python: the tokenizer lives inside the SavedModel): WordPiece on English
averages ~4 UTF-8 bytes per token, plus [CLS] and [SEP], capped at the model's maximum sequence length.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from .decode import TextRecord
from .errors import EmptyText, InvalidUtf8, TextTooLong

_BYTES_PER_TOKEN = 4
_SPECIAL_TOKENS = 2
_NOT_CONTENT = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Checked:
    """A record that passed the guard, with its estimated token count."""

    record: TextRecord
    tokens: int


class Guard:
    """``guard(record) -> Checked``; raises ``InvalidText``/``InvalidUtf8`` subclasses for bad texts."""

    def __init__(self, max_text_bytes: int, max_sequence_tokens: int) -> None:
        self._max_bytes = max_text_bytes
        self._max_tokens = max_sequence_tokens

    def __call__(self, record: TextRecord) -> Checked:
        text = record.text
        # Cheap size check on characters first: a UTF-8 character is at least one byte.
        if len(text) > self._max_bytes:
            raise TextTooLong(f"text exceeds max_text_bytes={self._max_bytes}")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidUtf8("text contains code points that are not valid in UTF-8 (lone surrogates)") from exc
        if size > self._max_bytes:
            raise TextTooLong(f"text exceeds max_text_bytes={self._max_bytes}")
        if not has_content(text):
            raise EmptyText("text is empty or holds only whitespace/control characters")
        return Checked(record, min(self._max_tokens, size // _BYTES_PER_TOKEN + 1 + _SPECIAL_TOKENS))


def has_content(text: str) -> bool:
    """True when the text holds at least one character that is not whitespace, control, format or U+FFFD."""
    return any(ch != "\ufffd" and unicodedata.category(ch) not in _NOT_CONTENT for ch in text)
