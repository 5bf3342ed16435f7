"""Counting for the fault suite: what an independent ``read_committed`` reader saw against what was published.

Pure functions over plain data (no broker): the fault tests feed them; ``tests/unit/test_fault_verify.py`` tests
them on hand-made inputs.

* lost: a published good id with no score record, or a published bad id with no dead-letter record.
* duplicated: records beyond the first per id, over the output and the dead-letter topic together.
* dead-letter check: every bad id is dead-lettered with the expected reason and the exact input coordinates
  (``__connect.errors.partition`` / ``.offset``); no good id is dead-lettered and no bad id is scored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BadInput:
    """A bad message the test published on purpose: the reason the worker must give and where it was written."""

    reason: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record as the reader saw it (headers already parsed; ``-1`` / "" when a header is missing)."""

    key: str
    reason: str
    partition: int
    offset: int


@dataclass
class Tally:
    published: int
    scored_unique: int
    output_records: int
    dead_letter_records: int
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    duplicated_ids: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # ids read back that were never (acknowledged as) published
    dead_letter_problems: list[str] = field(default_factory=list)
    bad_total: int = 0
    bad_ok: int = 0

    @property
    def dead_letter_ok(self) -> bool:
        return not self.dead_letter_problems and self.bad_ok == self.bad_total


def tally(
    good_ids: Iterable[str],
    bad: Mapping[str, BadInput],
    output_keys: Iterable[str],
    dead_letters: Iterable[DeadLetter],
    exactly_once: bool,
) -> Tally:
    good = set(good_ids)
    overlap = good & set(bad)
    if overlap:
        raise ValueError(f"ids both good and bad: {sorted(overlap)[:5]}")
    out = Counter(output_keys)
    dlq_list = list(dead_letters)
    dlq = Counter(d.key for d in dlq_list)
    result = Tally(
        published=len(good) + len(bad),
        scored_unique=len(set(out) & good),
        output_records=sum(out.values()),
        dead_letter_records=len(dlq_list),
        bad_total=len(bad),
    )
    result.lost = sorted((good - set(out)) | (set(bad) - set(dlq)))
    dup_ids = sorted(k for k, n in (out + dlq).items() if n > 1)
    result.duplicated = sum(n - 1 for n in out.values() if n > 1) + sum(n - 1 for n in dlq.values() if n > 1)
    result.duplicated_ids = dup_ids
    known = good | set(bad)
    result.unexpected = sorted((set(out) | set(dlq)) - known)

    problems = result.dead_letter_problems
    problems += [f"good id {k} dead-lettered" for k in sorted(set(dlq) & good)]
    problems += [f"bad id {k} scored" for k in sorted(set(out) & set(bad))]
    for key, expected in sorted(bad.items()):
        records = [d for d in dlq_list if d.key == key]
        if not records:
            continue  # counted as lost
        wrong = [
            d
            for d in records
            if (d.reason, d.partition, d.offset) != (expected.reason, expected.partition, expected.offset)
        ]
        if wrong:
            got = wrong[0]
            problems.append(
                f"{key}: dead-lettered as {got.reason}@{got.partition}/{got.offset}, expected "
                f"{expected.reason}@{expected.partition}/{expected.offset}"
            )
        elif exactly_once and len(records) != 1:
            problems.append(f"{key}: dead-lettered {len(records)} times in exactly-once")
        else:
            result.bad_ok += 1
    return result
