"""Assemble the fault suite's results file (JSON lines, one row per scenario run) into ``reports/reliability.md``.

    python -m tests.faults.report [--results .cache/faults/results.jsonl] [--out reports/reliability.md]
        [--command "make faults"] [--duration-s N]

The newest row per (scenario, mode) wins, so a re-run of one scenario replaces its row.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ORDER = (
    "worker_sigkill",
    "worker_sigterm",
    "broker_hard_bounce",
    "broker_clean_bounce",
    "rebalance_storm",
    "slow_batch",
    "input_flood",
)
DESCRIPTION = {
    "worker_sigkill": "2 workers; SIGKILL one at 20/45/70 % of the stream, restarted in the same slot",
    "worker_sigterm": "2 workers; SIGTERM one at 20/45/70 %, restarted in the same slot",
    "broker_hard_bounce": "from 20 %: SIGKILL broker 1, restart, full ISR; then broker 2; then broker 3",
    "broker_clean_bounce": "the same with SIGTERM (controlled shutdown)",
    "rebalance_storm": "from 10 %: a worker joins, 3 s later the oldest leaves (SIGTERM), 4 rounds",
    "slow_batch": "3 batches that spin 9 s in the model, max.poll.interval.ms = 12 s",
    "input_flood": "1 worker; 60,000 messages published as fast as the producer can",
}


def load(path: Path) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row["scenario"], row["mode"])] = row
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(rows.values(), key=lambda r: (rank.get(r["scenario"], 99), r["mode"]))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def render(
    rows: list[dict[str, Any]], command: str, duration_s: float | None = None, notes: list[str] | None = None
) -> str:
    lines = [
        "# Reliability: fault injection on a three-node Apache Kafka cluster",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit `{_commit()}`",
        f"- CPU: {_cpu()}, {__import__('os').cpu_count()} cores (shared by the 3 brokers, the workers and the test)",
        f"- Command: `{command}`" + (f" ({duration_s / 60:.1f} min)" if duration_s else ""),
        "- Cluster: Apache Kafka 4.4.0 KRaft, 3 nodes (broker + controller each) on loopback, replication factor 3,",
        "  `min.insync.replicas=2` (offsets and transaction state topics too); input and output topics 4 partitions.",
        "- Workers: `scorer worker --processes 1 --delivery <mode>` (console script) on the toy model of",
        "  `tests/toy_model.py` (faults, not BERT, are the subject), session timeout 6 s, commit interval 1 s;",
        "  in exactly-once each worker slot has its own `--transactional-id` (a restart reuses its slot's id).",
        "- Input: >= 20,000 Avro messages with unique ids published at a steady 600/s (acks=all, idempotent) while",
        "  the fault runs (input_flood: as fast as the producer can), plus 6 bad messages (2 undecodable, 2 empty",
        "  texts, 2 that make the model fail).",
        "- Verification: an independent `read_committed` consumer reads the output and dead-letter topics to their",
        "  end after the workers stopped. published = acknowledged inputs (6 of them bad); scored = distinct ids",
        "  with a score record; lost = published ids with no score (or bad ids with no dead letter);",
        "  duplicated = records beyond the first per id; dead letters ok = bad ids dead-lettered with the right",
        "  reason header and input partition/offset (once each in exactly-once).",
        *[f"- Note: {note}" for note in notes or []],
        "",
        "| scenario | mode | published | scored | lost | duplicated | dead letters ok | peak worker RSS (MiB) "
        "| duration (s) | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['mode']} | {r['published']:,} | {r['scored']:,} | {r['lost']} | "
            f"{r['duplicated']} | {r['dead_letter_ok']} | {r['peak_rss_mib']:.0f} | {r['duration_s']:.0f} | "
            f"{'pass' if r['passed'] else '**FAIL**'} |"
        )
    lines += ["", "## Scenarios", ""]
    lines += [f"- **{name}**: {DESCRIPTION[name]}" for name in ORDER if any(r["scenario"] == name for r in rows)]
    lines += ["", "## Faults injected and notes per run", ""]
    for r in rows:
        lines.append(f"- **{r['scenario']} / {r['mode']}**: " + "; ".join(r["faults"]))
        for note in r["notes"]:
            lines.append(f"  - {note}")
        if r["lost_examples"]:
            lines.append(f"  - lost, e.g.: {', '.join(r['lost_examples'])}")
        if r["duplicated_examples"]:
            lines.append(f"  - duplicated, e.g.: {', '.join(r['duplicated_examples'])}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / ".cache/faults/results.jsonl")
    parser.add_argument("--out", type=Path, default=REPO / "reports/reliability.md")
    parser.add_argument("--command", default="make faults")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--note", action="append", default=[], help="a line for the header (repeatable)")
    args = parser.parse_args()
    rows = load(args.results)
    if not rows:
        raise SystemExit(f"no results in {args.results}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args.command, args.duration_s, args.note))
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
