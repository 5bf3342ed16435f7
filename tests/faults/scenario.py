"""One fault scenario, start to end: topics, workers, steady publisher, the fault script, catch-up, verification.

``run_scenario`` returns the ``Result`` row (also appended to the results file) and raises ``AssertionError`` with
the evidence when the scenario failed: ids lost, duplicates in exactly-once, wrong dead letters, a fault that did
not land mid-stream, a worker that died on its own, a reader that could not reach the end of the topics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.harness import CommittedReader, Fleet, Result, SteadyPublisher, record
from tests.faults.verify import tally
from tests.harness import wait_while_progressing
from tests.kafka_cluster import KafkaCluster

# After the script's last fault the stream goes on for this many more messages before publishing stops: every
# fault lands mid-stream and is followed by traffic, however long the faults took on a slow machine.
TAIL_COUNT = 3_000
# The output must keep growing while it catches up; it fails only when it stood still this long.
CATCH_UP_STALL_S = 300.0

# Bad messages at fixed fractions of the minimum count: (fraction, reason the worker must give).
BAD_AT = (
    (0.04, "schema_mismatch"),
    (0.27, "empty_text"),
    (0.46, "scoring_failed"),
    (0.63, "schema_mismatch"),
    (0.81, "scoring_failed"),
    (0.93, "empty_text"),
)


@dataclass
class Run:
    """What a fault script may use while the stream runs."""

    cluster: KafkaCluster
    fleet: Fleet
    publisher: SteadyPublisher
    faults: list[str] = field(default_factory=list)
    late_faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    caught_up_at: float | None = None  # monotonic time the reader had seen every published id

    def at(self, fraction: float) -> None:
        """Wait until ``fraction`` of the minimum message count has been published."""
        self.publisher.wait_progress(fraction)

    def inject(self, label: str, action: Callable[[], object]) -> None:
        """Run one fault; it counts only if messages were still being published when it landed."""
        mid_stream = self.publisher.is_alive() and self.publisher.sent > 0
        action()
        stamp = f"{label} @{time.monotonic() - self.t0:.0f}s/{self.publisher.sent} sent"
        self.faults.append(stamp)
        if not mid_stream:
            self.late_faults.append(stamp)


Script = Callable[[Run], None]


def run_scenario(
    name: str,
    mode: str,
    cluster: KafkaCluster,
    model_dir: Path,
    logdir: Path,
    script: Script,
    *,
    rate: float = 600.0,
    min_count: int = 20_000,
    workers: int = 2,
    partitions: int = 4,
    extra_flags: tuple[str, ...] = (),
    markers: dict[int, str] | None = None,
    max_count: int | None = None,
    check: Callable[[Run, Result], list[str]] | None = None,
) -> Result:
    cluster.wait_full_isr(timeout_s=120)
    prefix = f"{name}-{mode}".replace("_", "-")
    in_topic = cluster.create_topic(f"in-{prefix}", partitions)
    out_topic = cluster.create_topic(f"out-{prefix}", partitions)
    dlq_topic = cluster.create_topic(f"dlq-{prefix}", 1)
    bad = {int(min_count * f): reason for f, reason in BAD_AT}
    fleet = Fleet(cluster.bootstrap_servers, (in_topic, out_topic, dlq_topic), model_dir, mode, logdir, extra_flags)
    reader = CommittedReader(cluster.bootstrap_servers, out_topic, dlq_topic, {out_topic: partitions, dlq_topic: 1})
    publisher = SteadyPublisher(
        cluster.bootstrap_servers, in_topic, prefix, rate, min_count, bad, max_count=max_count, markers=markers
    )
    t0 = time.monotonic()
    handles = [fleet.start(slot, wait_ready=False) for slot in range(workers)]
    for handle in handles:
        fleet.wait_ready(handle)
    run = Run(cluster, fleet, publisher)
    run.notes.append(f"idle worker RSS {fleet.current_rss_kib() / 1024:.0f} MiB")
    fleet.start_sampling()
    reader.start()
    publisher.start()
    problems: list[str] = []
    try:
        try:
            script(run)
            publisher.wait_sent(publisher.sent + TAIL_COUNT)
        finally:
            publisher.keep_going.clear()
        publisher.join(600)
        assert not publisher.is_alive(), "publisher did not finish"
        if publisher.error is not None:
            problems.append(f"publisher error: {publisher.error!r}")
        expected = publisher.acked
        try:
            wait_while_progressing(
                lambda: expected <= reader.seen(), lambda: len(reader.seen()), CATCH_UP_STALL_S, "the output"
            )
            run.caught_up_at = time.monotonic()
        except AssertionError as exc:
            problems.append(f"output did not catch up: {exc}")
        fleet.check_unexpected_exits()
    finally:
        fleet.stop_all()
    # No worker runs now (no open transaction is left): the reader must reach the end of every partition.
    lagging = reader.drain(180)
    if lagging:
        problems.append(f"reader stuck below the high watermark: {lagging[:4]}")
    duration = time.monotonic() - t0

    t = tally(
        publisher.good_ids(),
        publisher.bad_inputs(),
        list(reader.output_keys.elements()),
        reader.dead_letters,
        exactly_once=mode == "exactly-once",
    )
    result = Result.of(name, mode, t, fleet.peak_rss_kib, duration)
    result.faults = run.faults
    result.notes = [*run.notes, f"{publisher.sent} sent in {publisher.finished_at - publisher.started_at:.0f}s"]
    if publisher.failed:
        problems.append(f"{len(publisher.failed)} publishes not acknowledged, e.g. {publisher.failed[:3]}")
    if t.unexpected:
        problems.append(f"{len(t.unexpected)} ids read back that were never published: {t.unexpected[:5]}")
    if run.late_faults:
        problems.append(f"faults after publishing ended: {run.late_faults}")
    if fleet.unexpected_exits:
        problems.append(f"workers died on their own: {fleet.unexpected_exits}")
    if t.published < min_count:
        problems.append(f"only {t.published} published (< {min_count})")
    if result.lost:
        problems.append(f"{result.lost} ids lost, e.g. {result.lost_examples}")
    if mode == "exactly-once" and result.duplicated:
        evidence = {k: reader.sources.get(k) for k in result.duplicated_examples}
        problems.append(
            f"{result.duplicated} duplicates in exactly-once, e.g. {result.duplicated_examples}; "
            f"(out partition, out offset, source partition, source offset): {evidence}"
        )
    if not t.dead_letter_ok:
        problems.append(f"dead letters {result.dead_letter_ok}: {t.dead_letter_problems}")
    if check is not None:
        before = len(run.notes)
        problems += check(run, result)
        result.notes += run.notes[before:]
    result.passed = not problems
    result.notes += problems
    record(result)
    logs = "\n".join(f"  {w.log}" for w in fleet.workers)
    assert not problems, f"{name} [{mode}]:\n- " + "\n- ".join(problems) + f"\nworker logs:\n{logs}"
    return result
