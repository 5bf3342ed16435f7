"""The fault suite's counting (tests/faults/verify.py) on hand-made inputs: no broker."""

from __future__ import annotations

import pytest

from tests.faults.verify import BadInput, DeadLetter, tally

GOOD = {"a", "b", "c"}
BAD = {"x": BadInput("empty_text", 0, 7), "y": BadInput("schema_mismatch", 1, 3)}
DLQ_OK = [DeadLetter("x", "empty_text", 0, 7), DeadLetter("y", "schema_mismatch", 1, 3)]


def test_clean_run_counts_nothing_wrong() -> None:
    t = tally(GOOD, BAD, ["a", "b", "c"], DLQ_OK, exactly_once=True)
    assert (t.published, t.scored_unique, t.lost, t.duplicated) == (5, 3, [], 0)
    assert t.dead_letter_ok and t.bad_ok == 2


def test_lost_scores_and_lost_dead_letters() -> None:
    t = tally(GOOD, BAD, ["a", "c"], DLQ_OK[:1], exactly_once=False)
    assert t.lost == ["b", "y"]
    assert t.bad_ok == 1 and not t.dead_letter_ok


def test_duplicates_over_output_and_dead_letters() -> None:
    t = tally(GOOD, BAD, ["a", "a", "a", "b", "c"], [*DLQ_OK, DLQ_OK[0]], exactly_once=False)
    assert t.duplicated == 3 and t.duplicated_ids == ["a", "x"]
    assert t.dead_letter_ok  # at-least-once: a repeated, correct dead letter is fine
    eos = tally(GOOD, BAD, ["a", "b", "c"], [*DLQ_OK, DLQ_OK[0]], exactly_once=True)
    assert eos.duplicated == 1 and not eos.dead_letter_ok
    assert eos.dead_letter_problems == ["x: dead-lettered 2 times in exactly-once"]


def test_wrong_reason_or_coordinates_and_misrouted_ids() -> None:
    dlq = [DeadLetter("x", "scoring_failed", 0, 7), DeadLetter("y", "schema_mismatch", 1, 4), DeadLetter("a", "", 0, 1)]
    t = tally(GOOD, BAD, ["a", "b", "c", "x"], dlq, exactly_once=False)
    assert t.bad_ok == 0
    assert "good id a dead-lettered" in t.dead_letter_problems
    assert "bad id x scored" in t.dead_letter_problems
    assert any("x: dead-lettered as scoring_failed@0/7" in p for p in t.dead_letter_problems)
    assert any("y: dead-lettered as schema_mismatch@1/4" in p for p in t.dead_letter_problems)


def test_unexpected_ids_and_overlap() -> None:
    t = tally(GOOD, BAD, ["a", "b", "c", "zz"], DLQ_OK, exactly_once=True)
    assert t.unexpected == ["zz"] and not t.lost
    with pytest.raises(ValueError):
        tally({"x"}, BAD, [], [], exactly_once=True)
