"""The ``scorer`` command: worker, broker, produce, tail, train, demo.

Every worker setting is a flag here and an ``SCORER_*`` environment variable (see ``settings``); flags win.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from stream_worker.cli_flags import given_flags, with_settings_flags
from stream_worker.common import logs
from stream_worker.common.errors import ConfigError, ModelError, ScorerError
from stream_worker.common.registry_settings import RegistrySettings
from stream_worker.common.settings import ServeSettings, Settings, parse_kafka_options
from stream_worker.tools.pool import install_stop_handlers

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stream anonymized text through a sentiment model.")
log = logging.getLogger("stream_worker")

Opt = typer.Option
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def build_settings(**flags: Any) -> Settings:
    """Worker settings from flags (those given) over ``SCORER_*`` environment variables over defaults."""
    return _settings(Settings, flags)


def _settings(model: type[SettingsT], flags: dict[str, Any]) -> SettingsT:
    """``model`` from the flags that were given over ``SCORER_*`` environment variables over defaults."""
    given = given_flags(model, flags)
    if "kafka" in given:
        if given["kafka"]:
            given["kafka"] = parse_kafka_options(given["kafka"])
        else:
            del given["kafka"]
    try:
        return model(**given)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from exc


def _one_line(exc: ValidationError) -> str:
    """A pydantic validation error as one readable line: 'invalid settings: field: problem; ...'."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(msg if where == "settings" else f"{where}: {msg}")
    return "invalid settings: " + "; ".join(parts)


@app.command(context_settings={"max_content_width": 120})
@with_settings_flags(Settings)
def worker(
    print_settings: Annotated[
        bool, Opt("--print-settings", help="Print the effective settings (secrets masked) as JSON and exit.")
    ] = False,
    **flags: Any,
) -> None:
    """Run worker processes of the consumer group until SIGTERM/SIGINT.

    Every setting is a flag below and an SCORER_<NAME> environment variable; a flag wins over the environment,
    the environment over the default.
    """
    settings = _or_exit(lambda: build_settings(**flags))
    if print_settings:
        typer.echo(json.dumps(settings.redacted(), indent=2, sort_keys=True))
        return
    logs.configure(settings.log_level)
    log.info("starting worker", extra={"settings": settings.redacted()})
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        # Always the supervisor (which never imports TensorFlow, so its probes answer during start-up) with
        # process_count worker processes; see pool.py.
        from stream_worker.tools.pool import WorkerPool

        code = WorkerPool(settings).run(stop)
    except (ConfigError, ModelError) as exc:
        _fail(exc, 2)
    except ScorerError as exc:
        _fail(exc, 1)
    raise typer.Exit(code)


def _fail(exc: ScorerError, code: int) -> None:
    """One clear line on stderr and a non-zero exit; no traceback for a user's mistake or an outage."""
    typer.echo(f"scorer: error: {exc}", err=True)
    raise typer.Exit(code) from exc


@app.command(context_settings={"max_content_width": 120})
@with_settings_flags(ServeSettings)
def serve(
    print_settings: Annotated[
        bool, Opt("--print-settings", help="Print the effective settings as JSON and exit.")
    ] = False,
    **flags: Any,
) -> None:
    """Serve the model over HTTP: TF Serving REST (/v1) and the Open Inference Protocol (/v2), batched by length on
    the same engine as the Kafka worker.  Every setting is a flag and an SCORER_<NAME> environment variable."""
    settings = _or_exit(lambda: _settings(ServeSettings, flags))
    if print_settings:
        typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
        return
    logs.configure(settings.log_level)
    from stream_worker.serve.app import serve as run_server

    try:
        run_server(settings)
    except (ConfigError, ModelError) as exc:
        _fail(exc, 2)


@app.command()
def broker(
    port: Annotated[int, Opt(envvar="SCORER_BROKER_PORT", help="Port to listen on (127.0.0.1).")] = 9092,
) -> None:
    """Start the embedded tansu broker (memory storage) in the foreground until Ctrl-C/SIGTERM."""
    from stream_worker.tools.broker import run_foreground

    if _port_taken(port):
        typer.echo(f"scorer: error: port {port} on 127.0.0.1 is taken; choose another with --port", err=True)
        raise typer.Exit(2)
    logs.configure("INFO")
    raise typer.Exit(run_foreground(port))


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@app.command()
def produce(
    source: Annotated[str, typer.Argument(help="JSONL or CSV file with id,text columns, or - for stdin lines.")] = "-",
    bootstrap_servers: Annotated[str, Opt(envvar="SCORER_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")] = (
        "127.0.0.1:9092"
    ),
    topic: Annotated[str, Opt(envvar="SCORER_INPUT_TOPIC", help="Topic to publish to.")] = "text-messages",
    input_format: Annotated[str, Opt(envvar="SCORER_INPUT_FORMAT", help="avro or json.")] = "avro",
    limit: Annotated[int, Opt(help="Publish at most this many (0: all).")] = 0,
    skip_bad: Annotated[
        bool, Opt("--skip-bad", help="Publish the good lines even if some are bad (exit code 1 if any were).")
    ] = False,
    broker_timeout_s: Annotated[
        float, Opt(envvar="SCORER_BROKER_TIMEOUT_S", help="Give up when the cluster does not answer this long.")
    ] = 30.0,
    schema_registry_url: Annotated[
        str | None,
        Opt(
            envvar="SCORER_SCHEMA_REGISTRY_URL",
            help="Schema Registry URL: each Avro record is framed with its registered schema id (registered if "
            "new). Auth, CA and subject strategy come from SCORER_SCHEMA_REGISTRY_* and "
            "SCORER_SUBJECT_NAME_STRATEGY, as for the worker.",
        ),
    ] = None,
) -> None:
    """Publish texts with the project's input schema (keyed by id).

    The whole input is checked first: a bad line (not JSON, no text, a broken CSV row) is reported as file:line
    and, unless --skip-bad is given, nothing is published.
    """
    from stream_worker.tools.client import publish_texts, read_texts

    if input_format not in ("avro", "json"):
        typer.echo(f"scorer: error: --input-format must be avro or json, not {input_format!r}", err=True)
        raise typer.Exit(2)
    registry = _or_exit(lambda: _settings(RegistrySettings, {"schema_registry_url": schema_registry_url}))
    if registry.schema_registry_url and input_format != "avro":
        typer.echo("scorer: error: --schema-registry-url frames Avro records; use --input-format avro", err=True)
        raise typer.Exit(2)
    items, bad = _or_exit(lambda: read_texts(source, limit))
    for line in bad[:20]:
        typer.echo(f"{line.where}: {line.reason}", err=True)
    if len(bad) > 20:
        typer.echo(f"... and {len(bad) - 20} more bad lines", err=True)
    if bad and not skip_bad:
        typer.echo(
            f"scorer: error: {len(bad)} bad lines in {source}; nothing published "
            f"(fix them, or use --skip-bad to publish the {len(items)} good ones)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        sent = publish_texts(bootstrap_servers, topic, items, input_format, broker_timeout_s, registry)
    except ScorerError as exc:
        _fail(exc, 1)
    typer.echo(f"published {sent} messages to {topic}" + (f"; refused {len(bad)} bad lines" if bad else ""), err=True)
    if bad:
        raise typer.Exit(1)


@app.command()
def tail(
    bootstrap_servers: Annotated[str, Opt(envvar="SCORER_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")] = (
        "127.0.0.1:9092"
    ),
    topic: Annotated[str, Opt(envvar="SCORER_OUTPUT_TOPIC", help="Output topic to read.")] = "sentiment-scores",
    from_beginning: Annotated[bool, Opt(help="Read the topic from its start.")] = True,
    max_messages: Annotated[int, Opt(help="Stop after this many (0: run until Ctrl-C).")] = 0,
    idle_timeout: Annotated[float, Opt(help="Stop after this many idle seconds (0: never).")] = 0.0,
    as_json: Annotated[bool, Opt("--json", help="One JSON object per line instead of a live table.")] = False,
    broker_timeout_s: Annotated[
        float, Opt(envvar="SCORER_BROKER_TIMEOUT_S", help="Give up when the cluster does not answer this long.")
    ] = 30.0,
    schema_registry_url: Annotated[
        str | None,
        Opt(
            envvar="SCORER_SCHEMA_REGISTRY_URL",
            help="Schema Registry URL: framed scores are read with the writer schema their id names. Auth and CA "
            "come from SCORER_SCHEMA_REGISTRY_*, as for the worker.",
        ),
    ] = None,
) -> None:
    """Read the output topic and show scores live."""
    from stream_worker.pipeline.connect import check_cluster
    from stream_worker.tools.client import tail_scores

    registry = _or_exit(lambda: _settings(RegistrySettings, {"schema_registry_url": schema_registry_url}))
    try:
        check_cluster({"bootstrap.servers": bootstrap_servers}, broker_timeout_s)
        tail_scores(bootstrap_servers, topic, from_beginning, max_messages, idle_timeout, as_json, registry)
    except ConfigError as exc:
        _fail(exc, 2)
    except ScorerError as exc:
        _fail(exc, 1)


@app.command()
def train(
    profile: Annotated[str, Opt(envvar="SCORER_TRAIN_PROFILE", help="ci, demo or default.")] = "default",
    data: Annotated[
        str, Opt(envvar="SCORER_TRAIN_DATA", help="rotten_tomatoes, csv:PATH, jsonl:PATH or tfds.")
    ] = "rotten_tomatoes",
    model_base: Annotated[
        Path, Opt(envvar="SCORER_MODEL_DIR", help="Model repository the Pusher writes to (the workers' --model-dir).")
    ] = Path("models/sentiment"),
    work_dir: Annotated[
        Path, Opt(envvar="SCORER_TRAIN_WORK_DIR", help="Pipeline root (artifacts, metadata, report).")
    ] = Path("runs/train"),
    set_: Annotated[
        list[str] | None,
        Opt(
            "--set",
            metavar="FIELD=VALUE",
            help="Override one profile field (repeatable), e.g. --set train_steps=500 or --set split_by_group=False "
            "(fields: training/profiles.py).",
        ),
    ] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Print the training command as JSON and exit.")] = False,
) -> None:
    """Run the TFX training pipeline (Python 3.10 environment) and push a new model version."""
    from stream_worker.tools.training_bridge import run_training, training_command

    if profile not in ("ci", "demo", "default"):
        typer.echo(f"scorer: error: unknown profile {profile!r}; choose ci, demo or default", err=True)
        raise typer.Exit(2)
    overrides = list(set_ or [])
    if dry_run:
        typer.echo(json.dumps({"command": training_command(profile, data, model_base, work_dir, overrides)}))
        return
    raise typer.Exit(run_training(profile, data, model_base, work_dir, overrides))


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
    from stream_worker.tools.demo import run_demo

    raise typer.Exit(run_demo(messages, workers, model_dir, port))


@app.command()
def bench(
    model_dir: Annotated[Path, Opt(envvar="SCORER_MODEL_DIR", help="Model repository to measure.")] = Path(
        "models/sentiment"
    ),
    quick: Annotated[bool, Opt("--quick", help="Smoke run: small text sets, one round, each code path once.")] = False,
    rounds: Annotated[int, Opt(help="Rounds of every variant (medians are reported).")] = 2,
    bootstrap_servers: Annotated[
        Optional[str], Opt(help="Measure on this cluster instead of an embedded tansu broker.")  # noqa: UP045
    ] = None,
    output_dir: Annotated[Path, Opt(help="Where the report (Markdown + PNG) goes.")] = Path("reports/benchmarks"),
    schema_registry_url: Annotated[
        Optional[str],  # noqa: UP045
        Opt(help="Also measure registry-framed Avro in and out against this Schema Registry (vs plain Avro)."),
    ] = None,
) -> None:
    """Measure throughput, latency and resources of every variant side by side and write a report."""
    from stream_worker.bench.runner import run_bench
    from stream_worker.bench.variants import Options
    from stream_worker.engine.model_repo import require_servable

    try:
        require_servable(model_dir)
    except ScorerError as exc:
        _fail(exc, 2)
    opts = Options(
        model_dir=model_dir.resolve(),
        output_dir=output_dir,
        rounds=rounds,
        bootstrap_servers=bootstrap_servers,
        schema_registry_url=schema_registry_url,
    )
    if quick:
        opts.quick, opts.rounds = True, 1
        opts.short_texts, opts.long_texts, opts.peer_texts, opts.latency_seconds = 128, 8, 24, 3.0
        opts.http_requests = 128
    path = run_bench(opts)
    typer.echo(f"report: {path}")


def _or_exit(make: Any) -> Any:
    try:
        return make()
    except ConfigError as exc:
        typer.echo(f"scorer: error: {exc}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    """The console script.  Every mistake a user can make on the command line (an unknown flag or command, a bad
    value, a missing argument) and every configuration error ends in one line on stderr and a non-zero exit:
    click's usage errors are caught here instead of being drawn as a framed box."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner lines are not our logs
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="scorer", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: unknown flag or command, bad value, missing argument
        sys.exit(_usage_error(exc))
    except typer.Abort:
        sys.exit(130)
    except (ConfigError, ModelError) as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ScorerError as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    """A usage error as one line, ``scorer: error: <what> (see 'scorer worker --help')``; plain ``scorer`` (no
    command) prints the help instead, as before."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help(), file=sys.stderr)
        return 2
    message = " ".join(exc.format_message().split())
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    print(f"scorer: error: {message}{hint}", file=sys.stderr)
    return int(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
