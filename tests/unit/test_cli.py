"""The ``scorer`` console script as a user runs it: a subprocess, flags, ``SCORER_*`` env, exit codes, output.

No broker is needed here: settings are checked with ``--print-settings``, errors are provoked with an address
nothing listens on, a missing model repository and a taken port.  The broker-backed flows (worker pool, produce,
tail, rollout) are in tests/integration.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_worker.common.settings import Settings

SCORER = str(Path(sys.executable).parent / "scorer")

# One non-default value per worker setting.  A new Settings field without an entry here fails the test below,
# so no setting can exist without a working flag.
FLAG_VALUES: dict[str, tuple[list[str], Any]] = {
    "bootstrap_servers": (["--bootstrap-servers", "k1:9093,k2:9093"], "k1:9093,k2:9093"),
    "input_topic": (["--input-topic", "in-x"], "in-x"),
    "output_topic": (["--output-topic", "out-x"], "out-x"),
    "dead_letter_topic": (["--dead-letter-topic", "dlq-x"], "dlq-x"),
    "group_id": (["--group-id", "grp-x"], "grp-x"),
    "model_dir": (["--model-dir", "/srv/models/x"], "/srv/models/x"),
    "model_version": (["--model-version", "12"], 12),
    "model_poll_interval_s": (["--model-poll-interval-s", "7.5"], 7.5),
    "model_settle_s": (["--model-settle-s", "0.5"], 0.5),
    "schema_dir": (["--schema-dir", "/srv/schemas"], "/srv/schemas"),
    "input_format": (["--input-format", "json"], "json"),
    "max_text_bytes": (["--max-text-bytes", "1000"], 1000),
    "max_batch_size": (["--max-batch-size", "64"], 64),
    "max_wait_ms": (["--max-wait-ms", "5"], 5),
    "token_budget": (["--token-budget", "8192"], 8192),
    "max_sequence_tokens": (["--max-sequence-tokens", "256"], 256),
    "sort_window": (["--sort-window", "2"], 2),
    "commit_interval_ms": (["--commit-interval-ms", "250"], 250),
    "delivery": (["--delivery", "exactly-once"], "exactly-once"),
    "transactional_id": (["--transactional-id", "scorer-a-0"], "scorer-a-0"),
    "transaction_timeout_ms": (["--transaction-timeout-ms", "20000"], 20000),
    "max_poll_interval_ms": (["--max-poll-interval-ms", "60000"], 60000),
    "session_timeout_ms": (["--session-timeout-ms", "6000"], 6000),
    "auto_offset_reset": (["--auto-offset-reset", "latest"], "latest"),
    "linger_ms": (["--linger-ms", "3"], 3),
    "compression": (["--compression", "zstd"], "zstd"),
    "security_protocol": (["--security-protocol", "SASL_SSL"], "SASL_SSL"),
    "sasl_mechanism": (["--sasl-mechanism", "SCRAM-SHA-512"], "SCRAM-SHA-512"),
    "sasl_username": (["--sasl-username", "alice"], "alice"),
    "sasl_password": (["--sasl-password", "hunter2"], "**********"),
    "ssl_key_password": (["--ssl-key-password", "s3cret"], "**********"),
    "kafka": (
        ["--kafka", "ssl.ca.location=/ca.pem", "--kafka", "fetch.max.bytes=1000"],
        {"ssl.ca.location": "***", "fetch.max.bytes": "***"},
    ),
    "kafka_properties_file": (["--kafka-properties-file", "/etc/client.properties"], "/etc/client.properties"),
    "metrics_host": (["--metrics-host", "0.0.0.0"], "0.0.0.0"),
    "metrics_port": (["--metrics-port", "19999"], 19999),
    "processes": (["--processes", "3"], 3),
    "inference_threads": (["--inference-threads", "3"], 3),
    "broker_timeout_s": (["--broker-timeout-s", "4"], 4.0),
    "precision": (["--precision", "bf16"], "bf16"),
    "pii_policy": (["--pii-policy", "redact"], "redact"),
    "pii_quarantine_topic": (["--pii-quarantine-topic", "pii-q"], "pii-q"),
    "log_level": (["--log-level", "DEBUG"], "DEBUG"),
    "schema_registry_url": (["--schema-registry-url", "https://registry:8081"], "https://registry:8081"),
    "schema_registry_user": (["--schema-registry-user", "svc-scorer"], "svc-scorer"),
    "schema_registry_password": (["--schema-registry-password", "r3g-pw"], "**********"),
    "schema_registry_ca_location": (["--schema-registry-ca-location", "/etc/registry-ca.crt"], "/etc/registry-ca.crt"),
    "subject_name_strategy": (["--subject-name-strategy", "topic-record"], "topic-record"),
    "auto_register_schemas": (["--no-auto-register-schemas"], False),
    "schema_cache_size": (["--schema-cache-size", "50"], 50),
    "schema_registry_timeout_s": (["--schema-registry-timeout-s", "2.5"], 2.5),
}


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    return subprocess.run(
        [SCORER, *args], env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout, **kw
    )


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-2000:]


def test_every_setting_has_a_flag_that_takes_effect() -> None:
    assert set(FLAG_VALUES) == set(Settings.model_fields), "give every new setting a flag value above"
    args = [a for flags, _ in FLAG_VALUES.values() for a in flags]
    proc = run("worker", "--print-settings", *args)
    assert proc.returncode == 0, proc.stderr
    effective = json.loads(proc.stdout)
    for name, (_, expected) in FLAG_VALUES.items():
        assert effective[name] == expected, name
    assert "hunter2" not in proc.stdout and "s3cret" not in proc.stdout and "/ca.pem" not in proc.stdout
    assert "r3g-pw" not in proc.stdout


def test_flag_over_env_over_default() -> None:
    env = {"SCORER_INPUT_TOPIC": "env-in", "SCORER_MAX_BATCH_SIZE": "16", "SCORER_SASL_PASSWORD": "from-env"}
    proc = run("worker", "--print-settings", "--input-topic", "flag-in", env=env)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["input_topic"] == "flag-in"  # flag beats env
    assert s["max_batch_size"] == 16  # env beats default
    assert s["output_topic"] == Settings.model_fields["output_topic"].default  # default
    assert s["sasl_password"] == "**********" and "from-env" not in proc.stdout


def test_the_readme_production_command_takes_its_flags() -> None:
    proc = run(
        "worker", "--print-settings", "--bootstrap-servers", "127.0.0.1:1", "--input-topic", "foo", "--model-dir", "/x"
    )
    s = json.loads(proc.stdout)
    assert (s["bootstrap_servers"], s["input_topic"], s["model_dir"]) == ("127.0.0.1:1", "foo", "/x")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--max-batch-size", "0"], {}, "max_batch_size"),
        (["--processes", "0"], {}, "processes"),
        (["--output-topic", "text-messages"], {}, "three different topics"),
        (["--kafka", "novalue"], {}, "key=value"),
        ([], {"SCORER_MAX_WAIT_MS": "soon"}, "max_wait_ms"),
        (["--schema-registry-url", "registry:8081"], {}, "http(s)://"),
        ([], {"SCORER_SCHEMA_REGISTRY_PASSWORD": "pw"}, "needs schema_registry_user"),
        (["--schema-cache-size", "0"], {}, "schema_cache_size"),
    ],
)
def test_bad_settings_are_one_clear_line(args: list[str], env: dict[str, str], needle: str) -> None:
    proc = run("worker", "--print-settings", *args, env=env)
    assert proc.returncode == 2
    no_traceback(proc)
    assert needle in proc.stderr


def test_missing_model_repository(tmp_path: Path) -> None:
    proc = run("worker", "--model-dir", str(tmp_path / "nope"), "--metrics-port", "0")
    assert proc.returncode == 2
    no_traceback(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("scorer: error: model repository") and "does not exist" in last


def test_unreachable_broker(toy_model_dir: Path) -> None:
    proc = run(
        "worker",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--model-dir",
        str(toy_model_dir),
        "--metrics-port",
        "0",
        "--broker-timeout-s",
        "2",
    )
    assert proc.returncode == 1
    no_traceback(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("scorer: error: cannot reach the Kafka cluster at 127.0.0.1:1 within 2 s")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_taken_metrics_port(toy_model_dir: Path, taken_port: int, processes: str) -> None:
    proc = run("worker", "--model-dir", str(toy_model_dir), "--metrics-port", str(taken_port), "--processes", processes)
    assert proc.returncode == 2
    no_traceback(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"scorer: error: cannot serve metrics on 127.0.0.1:{taken_port}")


def test_broker_port_taken(taken_port: int) -> None:
    proc = run("broker", "--port", str(taken_port), timeout=30)
    assert proc.returncode == 2
    no_traceback(proc)
    assert f"port {taken_port} on 127.0.0.1 is taken" in proc.stderr
    proc = run("broker", env={"SCORER_BROKER_PORT": str(taken_port)}, timeout=30)  # env works too
    assert proc.returncode == 2 and f"port {taken_port}" in proc.stderr


def test_train_dry_run_flags_env_and_precedence(tmp_path: Path) -> None:
    proc = run("train", "--dry-run", env={"SCORER_TRAIN_PROFILE": "demo", "SCORER_MODEL_DIR": str(tmp_path / "env")})
    command = json.loads(proc.stdout)["command"]
    assert command[command.index("--profile") + 1] == "demo"
    assert command[command.index("--model-base") + 1] == str(tmp_path / "env")
    assert command[command.index("--data") + 1] == "rotten_tomatoes"  # default
    proc = run(
        "train",
        "--dry-run",
        "--profile",
        "ci",
        "--data",
        "csv:/d.csv",
        "--model-base",
        str(tmp_path / "f"),
        "--work-dir",
        str(tmp_path / "w"),
        env={"SCORER_TRAIN_PROFILE": "demo"},
    )
    command = json.loads(proc.stdout)["command"]
    assert command[command.index("--profile") + 1] == "ci"  # flag beats env
    assert command[command.index("--data") + 1] == "csv:/d.csv"
    assert command[command.index("--work-dir") + 1] == str(tmp_path / "w")
    assert "--set" not in command
    proc = run("train", "--dry-run", "--set", "split_by_group=False", "--set", "train_steps=500")
    command = json.loads(proc.stdout)["command"]
    assert command[-4:] == ["--set", "split_by_group=False", "--set", "train_steps=500"]  # passed through, in order
    proc = run("train", "--profile", "huge")
    assert proc.returncode == 2 and "unknown profile" in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("command", ["worker", "produce", "tail", "broker", "train", "demo"])
def test_help_of_every_subcommand(command: str) -> None:
    proc = run(command, "--help")
    assert proc.returncode == 0
    assert "Usage: scorer " + command in proc.stdout


def test_no_subcommand_shows_usage() -> None:
    proc = run()
    assert "worker" in proc.stdout + proc.stderr and "produce" in proc.stdout + proc.stderr


COMMANDS = ["worker", "serve", "produce", "tail", "broker", "train", "demo", "bench"]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one non-empty stderr line, ``scorer: error: ...``, and nothing on stdout."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("scorer: error: "), proc.stderr
    assert not proc.stdout.strip(), proc.stdout
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_flag_is_one_line(command: str) -> None:
    line = one_error_line(run(command, "--no-such-flag"))
    assert "--no-such-flag" in line and f"scorer {command} --help" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["no-such-command"], "no-such-command"),
        (["worker", "--max-batch-size", "many"], "max-batch-size"),  # not an integer (parser)
        (["worker", "--delivery", "twice"], "--delivery"),  # not one of the choices (parser)
        (["worker", "--input-topic"], "--input-topic"),  # a flag without its value
        (["serve", "--port", "http"], "--port"),
        (["produce", "--limit", "x"], "--limit"),
        (["produce", "a.jsonl", "b.jsonl"], "unexpected extra argument"),
        (["tail", "--max-messages", "-"], "--max-messages"),
        (["broker", "--port", "ninety"], "--port"),
        (["train", "--profile", "huge"], "unknown profile"),
        (["demo", "--messages", "lots"], "--messages"),
        (["bench", "--rounds", "two"], "--rounds"),
        (["worker", "--subject-name-strategy", "subject"], "--subject-name-strategy"),
        (["produce", "--schema-registry-url", "registry"], "http(s)://"),
        (["tail", "--schema-registry-url", "ftp://registry"], "http(s)://"),
    ],
)
def test_bad_values_are_one_line(args: list[str], needle: str) -> None:
    line = one_error_line(run(*args))
    assert needle.lower() in line.lower(), line


# --- scorer produce: everything is checked before anything is published ------------------------------------------
BAD_FILES = {
    "bad.jsonl": (
        '{"id": "a", "text": "fine"}\nnot json\n{"id": "c"}\n[1, 2]\n{"text": 5}\n',
        [
            "bad.jsonl:2: not valid JSON",
            "bad.jsonl:3: no 'text' field",
            "bad.jsonl:4: not a JSON object",
            "bad.jsonl:5: 'text' is not a string",
        ],
    ),
    "bad.csv": (
        'id,text\n1,fine\n2\n3,"also fine"\n4,x,extra\n',
        ["bad.csv:3: fewer fields than the header", "bad.csv:5: more fields than the header"],
    ),
    "noheader.csv": ("id,body\n1,hello\n", ["noheader.csv:1: the header has no 'text' column"]),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_produce_refuses_a_file_with_bad_lines(tmp_path: Path, name: str) -> None:
    content, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(content)
    # Port 1 answers nothing: the refusal must come before any connection attempt.
    proc = run("produce", str(path), "--bootstrap-servers", "127.0.0.1:1", "--broker-timeout-s", "2")
    assert proc.returncode == 2
    no_traceback(proc)
    for line in expected:
        assert f"{tmp_path}/{line}" in proc.stderr
    assert "nothing published" in proc.stderr
    assert "fine" not in proc.stderr  # texts are never echoed


def test_produce_errors(tmp_path: Path) -> None:
    proc = run("produce", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    no_traceback(proc)
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "text": "fine"}\n')
    proc = run("produce", str(good), "--bootstrap-servers", "127.0.0.1:1", "--broker-timeout-s", "2")
    assert proc.returncode == 1
    no_traceback(proc)
    assert "cannot reach the Kafka cluster at 127.0.0.1:1" in proc.stderr
    proc = run("produce", str(good), "--input-format", "xml")
    assert proc.returncode == 2 and "avro or json" in proc.stderr
    proc = run("tail", "--bootstrap-servers", "127.0.0.1:1", "--broker-timeout-s", "2")
    assert proc.returncode == 1 and "cannot reach the Kafka cluster" in proc.stderr
    no_traceback(proc)
    proc = run("produce", str(good), "--input-format", "json", "--schema-registry-url", "http://127.0.0.1:1")
    assert proc.returncode == 2 and "use --input-format avro" in proc.stderr
    # A registry that does not answer: one line, exit 1, nothing published (checked before the broker).
    proc = run("produce", str(good), "--schema-registry-url", "http://127.0.0.1:1", "--broker-timeout-s", "2",
               env={"SCORER_SCHEMA_REGISTRY_TIMEOUT_S": "2"})  # fmt: skip
    assert proc.returncode == 1 and "Schema Registry unreachable" in proc.stderr, proc.stderr
    no_traceback(proc)
