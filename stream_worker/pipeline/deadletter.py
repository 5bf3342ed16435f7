"""Dead-letter records: the original key and value bytes, unchanged, plus headers that say why.

Headers follow Kafka Connect's ``__connect.errors.*`` convention so existing DLQ tooling can read them::

    __connect.errors.topic / .partition / .offset     where the message came from
    __connect.errors.stage                            DECODE | GUARD | SCORE
    __connect.errors.exception.class.name             e.g. stream_worker.errors.InvalidUtf8 (a stable public
                                                      name of the class in the one exception tree: it does not
                                                      follow the module layout, consumers match on it)
    __connect.errors.exception.message                our own message; never contains message text
    scorer.errors.reason                              short machine reason, also the metrics label

The input's own headers are kept in front of these, so a fixed record can be replayed as it was.
"""

from __future__ import annotations

from stream_worker.common.errors import BadMessage
from stream_worker.pipeline.consume import Headers, Incoming

REASON_HEADER = "scorer.errors.reason"
_PREFIX = "__connect.errors."
PUBLIC_ERRORS = "stream_worker.errors"  # the exception tree's public name (its module is stream_worker.common.errors)


def dead_letter_headers(incoming: Incoming, error: BadMessage) -> Headers:
    cls = type(error)
    headers: Headers = [(k, v) for k, v in incoming.headers if not k.startswith(_PREFIX) and k != REASON_HEADER]
    headers.extend(
        [
            (_PREFIX + "topic", incoming.topic.encode()),
            (_PREFIX + "partition", str(incoming.partition).encode()),
            (_PREFIX + "offset", str(incoming.offset).encode()),
            (_PREFIX + "stage", error.stage.encode()),
            (_PREFIX + "exception.class.name", f"{PUBLIC_ERRORS}.{cls.__qualname__}".encode()),
            (_PREFIX + "exception.message", str(error)[:1000].encode()),
            (REASON_HEADER, error.reason.encode()),
        ]
    )
    return headers
