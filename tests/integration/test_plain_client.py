"""The README's integration example works: a client that only reads schemas/ publishes texts and reads scores."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, WorkerThread, worker_settings

pytestmark = pytest.mark.integration


def test_plain_confluent_fastavro_client(broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path) -> None:
    settings = worker_settings(broker, topic_factory, toy_model_dir, partitions=2)
    in_topic, out_topic = settings.input_topic, settings.output_topic
    with WorkerThread(settings):
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "plain_client.py"),
                "--bootstrap",
                broker.bootstrap_servers,
                "--input-topic",
                in_topic,
                "--output-topic",
                out_topic,
                "a wonderful film",
                "a dull, boring plot",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",  # cwd outside the repo: no project imports
            env={"PATH": "/usr/bin:/bin"},
        )
    assert result.returncode == 0, result.stderr[-2000:]
    scores = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(s["label"] for s in scores) == ["NEGATIVE", "POSITIVE"]
    assert all(s["model_version"] == "7" for s in scores)
