"""Fault injection on a three-node Apache Kafka cluster (RF 3, min.insync.replicas=2), in both delivery modes.

Every scenario publishes at least 20,000 Avro messages with unique ids at a steady rate while it runs (plus six bad
ones with known ids and offsets), runs ``scorer worker --processes 1 --delivery <mode>`` processes on the toy model,
injects its fault mid-stream, waits for the output to catch up, stops the workers and counts with an independent
``read_committed`` reader: lost ids (0 in both modes), duplicates (0 in exactly-once), dead letters (reason and
input coordinates; once each in exactly-once).  Rows land in the results file for ``reports/reliability.md``.

Scenarios marked ``faults_quick`` run in ``make test``; all of them with ``make faults`` (``FAULTS_FULL=1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.conftest import SLOW_BATCH_S
from tests.faults.harness import MODES, Result
from tests.faults.scenario import Run, run_scenario
from tests.faults.slow_model import SLOW
from tests.kafka_cluster import KafkaCluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]

quick = pytest.mark.faults_quick


def _quick_in(*modes: str) -> list[object]:
    """MODES with only ``modes`` marked ``faults_quick`` (the rest run with ``make faults``)."""
    return [pytest.param(m, marks=quick) if m in modes else m for m in MODES]


def _rotate(run: Run, how: str) -> None:
    """Three times, after 20/45/70 % of the stream: stop one worker (SIGKILL or SIGTERM), start it again."""
    for n, at in enumerate((0.2, 0.45, 0.7)):
        run.at(at)
        alive = run.fleet.alive()
        victim = alive[n % len(alive)]
        if how == "kill":
            run.inject(f"SIGKILL worker slot {victim.slot}", lambda v=victim: run.fleet.kill(v))
        else:
            run.inject(f"SIGTERM worker slot {victim.slot}", lambda v=victim: run.fleet.terminate(v))
        run.fleet.start(victim.slot)


def _bounce_brokers(run: Run, how: str) -> None:
    """From 20 % on: each node in turn is stopped (SIGKILL or SIGTERM), restarted, and its ISR must fill again."""
    run.at(0.2)
    for node in (1, 2, 3):
        if how == "kill":
            run.inject(f"SIGKILL broker {node}", lambda n=node: run.cluster.kill(n))
        else:
            run.inject(f"SIGTERM broker {node}", lambda n=node: run.cluster.terminate(n))
        time.sleep(3.0)
        seconds = run.cluster.start(node)
        run.cluster.wait_full_isr(timeout_s=180)
        run.notes.append(f"broker {node} back in {seconds:.0f}s")


def _storm(run: Run) -> None:
    """From 10 % on, every few seconds a worker joins (new slot) or the oldest leaves (SIGTERM); >= 1 stays."""
    run.at(0.1)
    next_slot = len(run.fleet.alive())
    for _ in range(4):
        slot = next_slot
        next_slot += 1
        run.inject(f"worker slot {slot} joins", lambda s=slot: run.fleet.start(s))
        time.sleep(3.0)
        oldest = run.fleet.alive()[0]
        run.inject(f"worker slot {oldest.slot} leaves", lambda o=oldest: run.fleet.terminate(o))
        time.sleep(3.0)


# Not in make test (make faults runs it): worker SIGKILLs are covered there by test_end_to_end (at-least-once, both
# brokers) and test_exactly_once's pool SIGKILLed three times mid-stream (exactly-once); this scenario repeats them
# on the 3-node cluster and was make test's longest (~4 min on a 2-core AVX2 machine).
@pytest.mark.parametrize("mode", MODES)
def test_worker_sigkill(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    run_scenario("worker_sigkill", mode, kafka_cluster, toy_model_dir, tmp_path, lambda r: _rotate(r, "kill"))


@pytest.mark.parametrize("mode", MODES)
def test_worker_sigterm(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    run_scenario("worker_sigterm", mode, kafka_cluster, toy_model_dir, tmp_path, lambda r: _rotate(r, "term"))


# make test keeps exactly-once here (the run that caught the stuck transaction, transaction.py step 7); an
# at-least-once broker SIGKILL is covered there by test_outage (nothing lost across a node killed and restarted).
@pytest.mark.parametrize("mode", _quick_in("exactly-once"))
def test_broker_hard_bounce(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    run_scenario(
        "broker_hard_bounce", mode, kafka_cluster, toy_model_dir, tmp_path, lambda r: _bounce_brokers(r, "kill")
    )


@pytest.mark.parametrize("mode", MODES)
def test_broker_clean_bounce(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    run_scenario(
        "broker_clean_bounce", mode, kafka_cluster, toy_model_dir, tmp_path, lambda r: _bounce_brokers(r, "term")
    )


@pytest.mark.parametrize("mode", MODES)
def test_rebalance_storm(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    run_scenario("rebalance_storm", mode, kafka_cluster, toy_model_dir, tmp_path, _storm)


@pytest.mark.parametrize("mode", MODES)
def test_slow_batch_near_max_poll_interval(
    mode: str, kafka_cluster: KafkaCluster, slow_model_dir: Path, tmp_path: Path
) -> None:
    """Three batches, each spinning SLOW_BATCH_S (9 s) in the model, under max.poll.interval.ms = 12 s."""
    at = (0.25, 0.5, 0.75)
    count = 20_000
    markers = {int(count * f): f" {SLOW}" for f in at}

    def script(run: Run) -> None:
        for f in at:
            run.at(f)
            run.inject(f"slow batch ({SLOW_BATCH_S:.0f}s) published", lambda: None)
        run.at(0.95)

    run_scenario(
        "slow_batch",
        mode,
        kafka_cluster,
        slow_model_dir,
        tmp_path,
        script,
        min_count=count,
        markers=markers,
        extra_flags=("--max-poll-interval-ms", "12000"),
    )


@pytest.mark.parametrize("mode", MODES)
def test_input_flood(mode: str, kafka_cluster: KafkaCluster, toy_model_dir: Path, tmp_path: Path) -> None:
    """One worker; the publisher floods as fast as it can (target >= 10x the worker's scoring rate).  The
    worker's RSS must stay bounded: its peak at most 600 MiB above its idle RSS."""
    count = 60_000
    # ~200-word texts: scoring costs more per message than publishing, so the flood outruns the worker many times.
    long_tail = " " + " ".join(["the movie was good but the ending was dull"] * 22)
    markers = dict.fromkeys(range(count), long_tail)

    def script(run: Run) -> None:
        run.at(0.05)
        run.inject("flood", lambda: None)
        run.at(1.0)

    def bounded(run: Run, result: Result) -> list[str]:
        idle = float(run.notes[0].split()[3])
        publish_s = max(run.publisher.finished_at - run.publisher.started_at, 1e-3)
        if run.caught_up_at is not None:
            score_s = max(run.caught_up_at - run.publisher.started_at, 1e-3)
            publish_rate, score_rate = run.publisher.sent / publish_s, run.publisher.sent / score_s
            run.notes.append(
                f"published {publish_rate:,.0f}/s, scored {score_rate:,.0f}/s: the flood ran at "
                f"{publish_rate / score_rate:.1f}x the worker's capacity"
            )
        problems = []
        if result.peak_rss_mib > idle + 600:
            problems.append(f"peak RSS {result.peak_rss_mib} MiB > idle {idle:.0f} + 600 MiB")
        return problems

    run_scenario(
        "input_flood",
        mode,
        kafka_cluster,
        toy_model_dir,
        tmp_path,
        script,
        rate=1e9,
        min_count=count,
        max_count=count,
        workers=1,
        markers=markers,
        check=bounded,
    )
