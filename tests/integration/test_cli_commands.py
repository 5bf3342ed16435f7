"""The README's remaining commands as a user runs them: ``scorer broker``, ``scorer produce -`` (stdin),
``scorer tail`` (live table) and ``scorer demo`` (on the small test model, embedded broker)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_worker.tools.broker import free_port
from tests.harness import read_topic

pytestmark = pytest.mark.integration

SCORER = str(Path(sys.executable).parent / "scorer")


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    return {**env, **extra}


def test_broker_produce_stdin_and_tail_table(tmp_path: Path) -> None:
    port = free_port()
    broker = subprocess.Popen(
        [SCORER, "broker", "--port", str(port)],
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # until the broker serves (each failed try is a whole process run)
        produced = None
        while time.monotonic() < deadline:
            produced = subprocess.run(
                [SCORER, "produce", "-", "--topic", "stdin-topic", "--broker-timeout-s", "3"],
                input="first line of text\n\nsecond line\n",
                env=user_env(SCORER_BOOTSTRAP_SERVERS=bootstrap),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if produced.returncode == 0:
                break
            time.sleep(0.5)
        assert produced is not None and produced.returncode == 0, produced.stderr if produced else "no run"
        assert "published 2 messages to stdin-topic" in produced.stderr
        records = read_topic(bootstrap, "stdin-topic", lambda r: len(r) >= 2, 120)
        assert sorted(r.key for r in records) == [b"stdin-1", b"stdin-3"]  # blank lines are skipped

        # `scorer tail` (table mode) on an output-format topic: write two score records with the test helper.
        from stream_worker.pipeline.avro import OUTPUT_SCHEMA, AvroEncoder, load_schema
        from tests.harness import produce

        encode = AvroEncoder(load_schema(OUTPUT_SCHEMA))
        rows = [
            {
                "id": f"id-{n}",
                "label": label,
                "score": score,
                "model_version": "3",
                "scored_at": 0,
                "source_topic": "t",
                "source_partition": 0,
                "source_offset": n,
            }
            for n, (label, score) in enumerate([("POSITIVE", 0.91), ("NEGATIVE", 0.12)])
        ]
        produce(bootstrap, "scores-topic", [(r["id"].encode(), encode(r), None) for r in rows])
        tail = subprocess.run(
            [
                SCORER,
                "tail",
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                "scores-topic",
                "--max-messages",
                "2",
                "--idle-timeout",
                "60",  # counted from tail's start: it covers the consumer's group join too
            ],
            env=user_env(COLUMNS="120"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert tail.returncode == 0, tail.stderr
        assert "id-0" in tail.stdout and "POSITIVE 0.910" in tail.stdout and "NEGATIVE 0.120" in tail.stdout
    finally:
        broker.send_signal(signal.SIGTERM)
        code = broker.wait(30)
        output = broker.stdout.read() if broker.stdout else ""
    assert code == 0, output
    assert "Traceback" not in output


def test_demo_on_the_test_model(toy_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.run(
        [SCORER, "demo", "--messages", "80", "--workers", "2", "--model-dir", str(toy_model_dir), "--port", str(port)],
        cwd=tmp_path,
        env=user_env(COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert "model version 7" in out
    lines = out.splitlines()
    summary = [n for n, line in enumerate(lines) if "Summary" in line]
    assert summary, out[-2000:]
    assert lines[summary[-1]].strip() == "Summary", "the summary title must start its own line"
    assert re.search(r"scored \(unique ids\)\W+80\W*$", out, re.M), out[-2000:]
    assert re.search(r"dead-lettered\W+2\W*$", out, re.M)
    assert re.search(r"duplicates\W+0\W*$", out, re.M)
    assert "Traceback" not in out + demo.stderr
