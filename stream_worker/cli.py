"""The ``scorer`` command: worker, broker, produce, tail, train, demo.

Every worker setting is a flag here and an ``SCORER_*`` environment variable (see ``settings``); flags win.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from . import logs
from .errors import ConfigError, ScorerError
from .settings import Settings, parse_kafka_options

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stream anonymized text through a sentiment model.")
log = logging.getLogger("stream_worker")

Opt = typer.Option


def build_settings(**flags: Any) -> Settings:
    """Settings from flags (those given) over ``SCORER_*`` environment variables over defaults."""
    kafka_pairs = flags.pop("kafka_pairs", None) or []
    given = {k: v for k, v in flags.items() if v is not None}
    if kafka_pairs:
        given["kafka"] = parse_kafka_options(kafka_pairs)
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings:\n{exc}") from exc


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command()
def worker(
    bootstrap_servers: Annotated[Optional[str], Opt(help="Kafka bootstrap servers.")] = None,  # noqa: UP045
    input_topic: Annotated[Optional[str], Opt(help="Input topic.")] = None,  # noqa: UP045
    output_topic: Annotated[Optional[str], Opt(help="Output topic.")] = None,  # noqa: UP045
    dead_letter_topic: Annotated[Optional[str], Opt(help="Dead-letter topic.")] = None,  # noqa: UP045
    group_id: Annotated[Optional[str], Opt(help="Consumer group id.")] = None,  # noqa: UP045
    model_dir: Annotated[Optional[Path], Opt(help="Model repository (<dir>/<version>/).")] = None,  # noqa: UP045
    input_format: Annotated[Optional[str], Opt(help="avro or json.")] = None,  # noqa: UP045
    max_batch_size: Annotated[Optional[int], Opt(help="Batch closes at this many texts.")] = None,  # noqa: UP045
    max_wait_ms: Annotated[Optional[int], Opt(help="Batch closes when its oldest waited this long.")] = None,  # noqa: UP045
    token_budget: Annotated[Optional[int], Opt(help="Max padded tokens per batch.")] = None,  # noqa: UP045
    max_sequence_tokens: Annotated[Optional[int], Opt(help="Model max sequence length.")] = None,  # noqa: UP045
    max_text_bytes: Annotated[Optional[int], Opt(help="Larger texts are dead-lettered.")] = None,  # noqa: UP045
    metrics_port: Annotated[Optional[int], Opt(help="Port of /metrics /healthz /readyz (0: off).")] = None,  # noqa: UP045
    inference_threads: Annotated[Optional[int], Opt(help="TensorFlow intra-op threads.")] = None,  # noqa: UP045
    kafka_properties_file: Annotated[Optional[Path], Opt(help="librdkafka .properties file.")] = None,  # noqa: UP045
    kafka_pairs: Annotated[list[str] | None, Opt("--kafka", help="librdkafka key=value (repeatable).")] = None,
    log_level: Annotated[Optional[str], Opt(help="DEBUG, INFO, WARNING, ERROR.")] = None,  # noqa: UP045
) -> None:
    """Run one worker of the consumer group until SIGTERM/SIGINT."""
    from .worker import Worker

    settings = _or_exit(lambda: build_settings(**{k: v for k, v in locals().items() if k != "Worker"}))
    logs.configure(settings.log_level)
    log.info("starting worker", extra={"settings": settings.redacted()})
    stop = threading.Event()
    _install_stop_handlers(stop)
    try:
        Worker(settings).run(stop)
    except ScorerError as exc:
        log.error("worker failed", extra={"error": type(exc).__name__, "detail": str(exc)})
        raise typer.Exit(1) from exc


@app.command()
def broker(
    port: Annotated[int, Opt(help="Port to listen on (127.0.0.1).")] = 9092,
) -> None:
    """Start the embedded tansu broker (memory storage) in the foreground."""
    from .broker import run_foreground

    logs.configure("INFO")
    run_foreground(port)


@app.command()
def produce(
    source: Annotated[str, typer.Argument(help="JSONL or CSV file with id,text columns, or - for stdin lines.")] = "-",
    bootstrap_servers: Annotated[str, Opt(envvar="SCORER_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092",
    topic: Annotated[str, Opt(envvar="SCORER_INPUT_TOPIC")] = "text-messages",
    input_format: Annotated[str, Opt(envvar="SCORER_INPUT_FORMAT", help="avro or json.")] = "avro",
    limit: Annotated[int, Opt(help="Publish at most this many (0: all).")] = 0,
) -> None:
    """Publish texts with the project's input schema (keyed by id)."""
    from .client import iter_texts, publish_texts

    sent = publish_texts(bootstrap_servers, topic, iter_texts(source, limit), input_format)
    typer.echo(f"published {sent} messages to {topic}", err=True)


@app.command()
def tail(
    bootstrap_servers: Annotated[str, Opt(envvar="SCORER_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092",
    topic: Annotated[str, Opt(envvar="SCORER_OUTPUT_TOPIC")] = "sentiment-scores",
    from_beginning: Annotated[bool, Opt(help="Read the topic from its start.")] = True,
    max_messages: Annotated[int, Opt(help="Stop after this many (0: run until Ctrl-C).")] = 0,
    idle_timeout: Annotated[float, Opt(help="Stop after this many idle seconds (0: never).")] = 0.0,
    as_json: Annotated[bool, Opt("--json", help="One JSON object per line instead of a live table.")] = False,
) -> None:
    """Read the output topic and show scores live."""
    from .client import tail_scores

    tail_scores(bootstrap_servers, topic, from_beginning, max_messages, idle_timeout, as_json)


@app.command()
def train(
    profile: Annotated[str, Opt(help="ci, demo or default.")] = "default",
    data: Annotated[str, Opt(help="rotten_tomatoes, csv:PATH, jsonl:PATH or tfds.")] = "rotten_tomatoes",
    model_base: Annotated[Path, Opt(help="Model repository the Pusher writes to.")] = Path("models/sentiment"),
    work_dir: Annotated[Path, Opt(help="Pipeline root (artifacts, metadata, report).")] = Path("runs/train"),
) -> None:
    """Run the TFX training pipeline (Python 3.10 environment) and push a new model version."""
    from .training_bridge import run_training

    raise typer.Exit(run_training(profile, data, model_base, work_dir))


@app.command()
def demo(
    messages: Annotated[int, Opt(help="Review texts to publish.")] = 3000,
    workers: Annotated[int, Opt(help="Worker processes in the group.")] = 2,
    model_dir: Annotated[Path, Opt(help="Model repository; trained with the demo profile if empty.")] = Path(
        "models/sentiment"
    ),
    port: Annotated[int, Opt(help="Embedded broker port.")] = 19092,
) -> None:
    """The whole product on one machine: embedded broker, model, two workers, real reviews, live scores."""
    from .demo import run_demo

    raise typer.Exit(run_demo(messages, workers, model_dir, port))


def _or_exit(make: Any) -> Any:
    try:
        return make()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner lines are not our logs
    try:
        app()
    except ScorerError as exc:
        print(json.dumps({"level": "error", "error": type(exc).__name__, "detail": str(exc)}), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
