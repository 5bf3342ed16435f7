"""Guard stage: check a decoded record before it may join a batch.

A text is rejected (→ dead-letter) when it is

* empty, or only whitespace / control / format characters / U+FFFD after decoding (``empty_text``): the model
  would score an empty sequence, which is a guess, not a score;
* larger than ``max_text_bytes`` UTF-8 bytes (``text_too_long``);
* not encodable as UTF-8, e.g. lone surrogates from a JSON ``\\ud800`` escape (``invalid_utf8``).

Accepted texts get a cost estimate, in padded tokens the model will run, that the batcher uses for length sorting
and its token budget.  The estimate is deliberately cheap (no tokenizer in Python: the tokenizer lives inside the
SavedModel): WordPiece on English averages ~4 UTF-8 bytes per token.  A text that fits one window costs its tokens
plus [CLS] and [SEP]; a longer one is cut by the model into ``windows`` windows of ``max_sequence_tokens`` (the
model's ``assets.extra/scorer.json`` says how: window length, stride, maximum windows per text), and costs
``windows x max_sequence_tokens``.  So one 2,000-word review counts as the 8 full windows it really is, and the
token budget keeps a batch of long texts as bounded in latency and memory as a batch of short ones.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from stream_worker.common.errors import EmptyText, InvalidUtf8, TextTooLong
from stream_worker.pipeline.decode import TextRecord

_BYTES_PER_TOKEN = 4
_SPECIAL_TOKENS = 2
_NOT_CONTENT = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Checked:
    """A record that passed the guard, with its estimated token count."""

    record: TextRecord
    tokens: int


def window_cost(tokens: int, max_sequence_tokens: int, stride: int = 0, max_windows: int = 1) -> int:
    """Padded tokens the model runs for a text of ``tokens`` WordPiece tokens (without [CLS]/[SEP])."""
    room = max_sequence_tokens - _SPECIAL_TOKENS
    if tokens <= room:
        return tokens + _SPECIAL_TOKENS
    if max_windows <= 1 or stride <= 0:
        return max_sequence_tokens
    windows = min(max_windows, 1 + -(-(tokens - room) // stride))
    return windows * max_sequence_tokens


class Guard:
    """``guard(record) -> Checked``; raises ``InvalidText``/``InvalidUtf8`` subclasses for bad texts."""

    def __init__(self, max_text_bytes: int, max_sequence_tokens: int, stride: int = 0, max_windows: int = 1) -> None:
        self._max_bytes = max_text_bytes
        self._max_tokens = max_sequence_tokens
        self._stride = stride
        self._max_windows = max_windows

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
        estimate = size // _BYTES_PER_TOKEN + 1
        return Checked(record, window_cost(estimate, self._max_tokens, self._stride, self._max_windows))


def has_content(text: str) -> bool:
    """True when the text holds at least one character that is not whitespace, control, format or U+FFFD."""
    return any(ch != "\ufffd" and unicodedata.category(ch) not in _NOT_CONTENT for ch in text)
