"""Frozen, validated settings: ``EngineSettings`` (model, batching) shared by the worker and the server.

Every field can be set by a command-line flag (``scorer worker --help``) or by an environment variable named
``SCORER_<FIELD>`` (e.g. ``SCORER_BOOTSTRAP_SERVERS``); flags win over the environment.  Arbitrary librdkafka
options pass through ``kafka`` (``--kafka key=value``, ``SCORER_KAFKA='{"key": "value"}'``) or a Java-style
``kafka_properties_file``, so SASL/TLS and any tuning work without code changes.  Secrets are ``SecretStr`` and
only revealed when the librdkafka config is rendered.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_worker.common.cpus import available_cores
from stream_worker.common.errors import ConfigError
from stream_worker.common.registry_settings import RegistrySettings

# librdkafka keys the worker owns because delivery guarantees depend on them; user overrides are refused.
_OWNED_CONSUMER_KEYS = frozenset({"enable.auto.offset.store", "enable.auto.commit", "group.id"})
_OWNED_PRODUCER_KEYS = frozenset({"enable.idempotence", "acks", "transactional.id", "transaction.timeout.ms"})


class EngineSettings(BaseSettings):
    """What every door that scores needs: the model repository, micro-batching, inference threads, precision.

    Shared by ``Settings`` (the Kafka worker) and ``ServeSettings`` (``scorer serve``), so both doors batch and
    roll out models by the same rules.
    """

    model_config = SettingsConfigDict(env_prefix="SCORER_", frozen=True, extra="forbid")

    # --- model ----------------------------------------------------------------------------------------------
    model_dir: Path = Field(
        Path("models/sentiment"),
        description="Model repository as TFX Pusher writes it: <model_dir>/<integer version>/saved_model.pb. "
        "The newest complete version is served; newer versions are picked up without a restart.",
    )
    model_version: int | None = Field(
        None,
        ge=0,
        description="Pin this model version (policy 'specific'); default: serve the newest (policy 'latest'). "
        "If the pinned folder is removed later, the newest remaining version is served.",
    )
    model_poll_interval_s: float = Field(
        2.0,
        ge=0,
        description="How often the model repository is checked for new or removed versions (0: never, load "
        "once at start). Shorter: faster rollouts; each check only lists a few folders.",
    )
    model_settle_s: float = Field(
        3.0,
        ge=0,
        description="A version folder is loaded only when saved_model.pb and variables/ exist and no file in it "
        "changed for this long (and its listing is unchanged between two checks), so a copy in progress (TFX "
        "Pusher copies file by file) is never loaded. Longer: safer on slow storage, slower rollouts.",
    )

    # --- micro-batching -------------------------------------------------------------------------------------
    max_text_bytes: int = Field(
        65_536,
        ge=1,
        description="Texts larger than this (UTF-8 bytes) are dead-lettered as text_too_long. The model only "
        "reads max_sequence_tokens tokens (head and tail), so larger texts cost decoding but add no signal.",
    )
    max_batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="A batch closes at this many texts. Larger batches use the cores better (more throughput) "
        "but each message waits for the whole batch (more latency) and memory grows linearly.",
    )
    max_wait_ms: int = Field(
        0,
        ge=0,
        description="0 (default): continuous batching. The inference thread takes what waits as soon as it is "
        "free, so a lone text is scored at once and batches grow with load by themselves (texts gather while a "
        "batch runs). Above 0: a fixed window, as before: what waits is held until sort_window x max_batch_size "
        "texts wait or the oldest waited this long; it adds up to this latency at low traffic and was measured to "
        "buy no throughput at saturation (scorer bench).",
    )
    token_budget: int = Field(
        4096,
        ge=16,
        description="A batch closes when batch_size x longest text (estimated tokens) would exceed this. The "
        "model pads a batch to its longest text, so this caps the padded work (and memory) of one batch.",
    )
    max_sequence_tokens: int = Field(
        128,
        ge=8,
        description="Tokens per model window, for models without assets.extra/scorer.json (trained models ship "
        "one, and its window length, stride and windows per text are used instead). Shapes the cost estimate of a "
        "text and the warm-up batch.",
    )
    sort_window: int = Field(
        4,
        ge=1,
        description="When messages wait, up to sort_window x max_batch_size are sorted by length before they "
        "are cut into batches, so similar lengths share a batch (less padding). 1 disables sorting.",
    )

    # --- inference ------------------------------------------------------------------------------------------
    inference_threads: int = Field(
        0,
        ge=0,
        description="TensorFlow intra-op threads per host; 0 = one per core this process may use (CPU affinity and "
        "the container's CPU quota). A pool splits them between its "
        "processes. Lower it when other work shares the host.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Inference precision. bf16 runs the model's matrix multiplications in bfloat16 (same "
        "SavedModel, no re-export): faster where the CPU has AVX512_BF16 or AMX, scores differ by ~1e-2 at most. "
        "auto: bf16 on such CPUs, fp32 elsewhere; bf16 on other CPUs falls back to fp32 with a log line.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    # --- anonymization guard --------------------------------------------------------------------------------
    pii_policy: Literal["off", "flag", "redact", "reject"] = Field(
        "flag",
        description="What to do with texts that still hold personal data (e-mail, phone, card, IBAN, IP, URL "
        "credentials, national ids): flag = score unchanged, header scorer.pii.kinds; redact = replace the values "
        "by <KIND> placeholders before scoring; reject = dead-letter (HTTP 422) with the kinds, never the values; "
        "off = no check (a few microseconds per text saved).",
    )

    @model_validator(mode="after")
    def _check_batching(self) -> EngineSettings:
        if self.token_budget < self.max_sequence_tokens:
            raise ValueError("token_budget must hold at least one text of max_sequence_tokens")
        return self


class ServeSettings(EngineSettings):
    """``scorer serve``: the HTTP door (TF Serving REST and Open Inference Protocol v2) on the same engine."""

    model_name: str = Field(
        "sentiment", description="The {name} in /v1/models/{name} and /v2/models/{name}; other names answer 404."
    )
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8501, ge=0, le=65535, description="HTTP port (8501 is TF Serving's REST port).")
    max_queue: int = Field(
        1024,
        ge=1,
        description="Texts that may wait for a batch; beyond, requests are refused at once with 429 (shed load "
        "early rather than time out late). Higher: absorbs bursts, at the cost of latency under overload.",
    )
    request_timeout_ms: int = Field(
        10_000,
        ge=1,
        description="A request not answered within this is answered 504. Should exceed max_wait_ms plus a few "
        "batch times.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Larger request bodies are refused with 413 before they are read."
    )
    max_texts_per_request: int = Field(
        1024, ge=1, description="More inputs in one request are refused with 400 (split the request)."
    )


class Settings(EngineSettings, RegistrySettings):
    """The Kafka worker: the engine's settings plus where to read and write, delivery, security, operations, and
    the Schema Registry (``registry_settings.py``)."""

    # --- where ----------------------------------------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers (host:port, comma separated)."
    )
    input_topic: str = Field("text-messages", description="Topic with TextMessage records to score.")
    output_topic: str = Field("sentiment-scores", description="Topic that receives one SentimentScore per input.")
    dead_letter_topic: str = Field(
        "text-messages.dlq",
        description="Topic for messages that cannot be decoded or scored (original bytes + reason headers).",
    )
    group_id: str = Field(
        "sentiment-scorer", description="Consumer group; add worker processes with the same id to scale out."
    )
    schema_dir: Path | None = Field(None, description="Folder with the .avsc files; default: the packaged ones.")

    # --- input ----------------------------------------------------------------------------------------------
    input_format: Literal["avro", "json"] = Field(
        "avro",
        description="avro: Avro binary (plain, or Confluent Schema Registry framing, recognised by its magic "
        "byte); json: UTF-8 JSON objects {'id','text'} that plain clients such as kcat can publish.",
    )

    pii_quarantine_topic: str | None = Field(
        None,
        description="With pii_policy=reject: send texts with personal data here instead of the dead-letter topic, "
        "so access to them can be restricted to one topic.",
    )

    # --- delivery -------------------------------------------------------------------------------------------
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="at-least-once: offsets are committed after the output is acknowledged; a crash can repeat "
        "outputs. exactly-once: outputs and input offsets commit in one Kafka transaction, so read_committed "
        "readers see each input's output once; costs a transaction per commit interval and needs Apache Kafka "
        "(refused on the embedded tansu broker).",
    )
    commit_interval_ms: int = Field(
        1000,
        ge=0,
        description="How often acknowledged offsets are committed (exactly-once: how long one transaction runs). "
        "Lower: fewer duplicates after a crash, and with exactly-once outputs visible to read_committed readers "
        "sooner; higher: fewer commit requests or transactions (more throughput). Offsets are always committed "
        "on rebalance and on stop.",
    )
    transactional_id: str | None = Field(
        None,
        description="exactly-once: transactional.id of this worker's producer. Default '<group_id>.<host>.<slot>' "
        "(slot = process number in a pool): stable across restarts, so a restarted worker fences its zombie and "
        "aborts its open transaction at once; must differ between live workers (set it per instance when several "
        "single-process workers share a host name, e.g. containers with a fixed hostname).",
    )
    transaction_timeout_ms: int = Field(
        60_000,
        ge=1000,
        le=900_000,
        description="exactly-once: the broker aborts a transaction left open this long (a worker that died and "
        "never came back). read_committed readers of the output wait at most this long behind it. Must exceed "
        "the commit interval plus the slowest batch.",
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        description="librdkafka max.poll.interval.ms: a worker that does not poll for this long leaves the "
        "group. Must exceed the slowest batch (checked against warm-up time at start).",
    )
    session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer session timeout: how fast a dead worker's partitions move."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new group starts. earliest: nothing published before is skipped."
    )
    linger_ms: int = Field(
        0,
        ge=0,
        description="Producer linger. 0 (default): a score record leaves at once; under load librdkafka still "
        "batches what accumulates while earlier requests are in flight. Above 0: every record may wait this long "
        "for company (librdkafka's own default is 5; at 20 msg/s on Apache Kafka it cost ~3 ms of p50).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="Compression of output and dead-letter records."
    )

    # --- security (rendered into librdkafka config) ---------------------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None, description="librdkafka security.protocol."
    )
    sasl_mechanism: str | None = Field(None, description="librdkafka sasl.mechanism (PLAIN, SCRAM-SHA-512, ...).")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret; never logged).")
    ssl_key_password: SecretStr | None = Field(None, description="Password of the TLS client key (secret).")
    kafka: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka options for consumer and producer (e.g. ssl.ca.location).",
    )
    kafka_properties_file: Path | None = Field(
        None, description="Java-style .properties file with more librdkafka options (same keys)."
    )

    # --- operations -----------------------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Address of the /metrics, /healthz, /readyz server.")
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of that server; 0 disables it. Several independent workers on one host need distinct "
        "ports (or 0); a worker pool (--processes) serves one port for all its processes.",
    )
    processes: Literal["auto"] | int = Field(
        "auto",
        description="Worker processes on this host, all in the same consumer group, under one supervisor that "
        "restarts a dead one and serves their aggregated metrics ('auto': one per core this process may use, "
        "counting its CPU affinity and its container's CPU quota, the default since "
        "scorer bench measured it 1.11x one process on 2 cores; each process costs ~1 GiB). 1: a single process, "
        "no supervisor (e.g. under an orchestrator that runs one container per core).",
    )
    broker_timeout_s: float = Field(
        30.0,
        gt=0,
        description="At start, how long to wait for the Kafka cluster to answer before giving up with an error. "
        "Longer rides out a broker that starts at the same time; shorter fails fast on a wrong address.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        topics = {self.input_topic, self.output_topic, self.dead_letter_topic}
        if len(topics) != 3:
            raise ValueError("input_topic, output_topic and dead_letter_topic must be three different topics")
        if self.pii_quarantine_topic in (self.input_topic, self.output_topic):
            raise ValueError("pii_quarantine_topic must not be the input or the output topic")
        if self.delivery == "exactly-once" and self.transaction_timeout_ms <= self.commit_interval_ms:
            raise ValueError("transaction_timeout_ms must be larger than commit_interval_ms")
        if isinstance(self.processes, int) and self.processes < 1:
            raise ValueError("processes must be 'auto' or at least 1")
        owned = (_OWNED_CONSUMER_KEYS | _OWNED_PRODUCER_KEYS) & set(self.kafka)
        if owned:
            raise ValueError(f"these librdkafka options are managed by the worker: {sorted(owned)}")
        return self

    @property
    def process_count(self) -> int:
        """How many worker processes ``processes`` means on this host."""
        if self.processes == "auto":
            return available_cores()
        return int(self.processes)

    def effective_transactional_id(self) -> str:
        """``transactional_id`` or the default ``<group_id>.<host>.<slot>`` (slot 0 outside a pool)."""
        if self.transactional_id:
            return self.transactional_id
        slot = os.environ.get("STREAM_WORKER_SLOT", "0")
        return f"{self.group_id}.{socket.gethostname()}.{slot}"

    # --- rendering ------------------------------------------------------------------------------------------
    def _common_kafka_config(self) -> dict[str, Any]:
        # socket.nagle.disable: librdkafka leaves Nagle's algorithm on by default, which can hold a small produce
        # or fetch request back until the previous segment is acknowledged (delayed ACKs: tens of ms).  A scorer
        # sends small requests one after another, so latency wins; throughput is unaffected (requests are whole
        # messages, batched by linger.ms).  Overridable with --kafka socket.nagle.disable=false.
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "socket.nagle.disable": True}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(read_properties(self.kafka_properties_file) if self.kafka_properties_file else {})
        conf.update(self.kafka)
        return conf

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka consumer config: offsets are stored by the worker only after output is acknowledged."""
        conf = self._common_kafka_config()
        conf.update(
            {
                "group.id": self.group_id,
                "enable.auto.offset.store": False,
                "enable.auto.commit": False,
                "auto.offset.reset": self.auto_offset_reset,
                "max.poll.interval.ms": self.max_poll_interval_ms,
                "session.timeout.ms": self.session_timeout_ms,
                "partition.assignment.strategy": conf.get("partition.assignment.strategy", "cooperative-sticky"),
                "statistics.interval.ms": conf.get("statistics.interval.ms", 5000),
            }
        )
        return conf

    def producer_config(self) -> dict[str, Any]:
        """librdkafka producer config: idempotent, acks=all, so an acknowledged record is durable and unique."""
        conf = self._common_kafka_config()
        for key in ("partition.assignment.strategy", "statistics.interval.ms", "auto.offset.reset"):
            conf.pop(key, None)
        conf.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": self.linger_ms,
                "compression.type": self.compression,
                "message.max.bytes": conf.get("message.max.bytes", 8 * 1024 * 1024),
            }
        )
        if self.delivery == "exactly-once":
            conf["transactional.id"] = self.effective_transactional_id()
            conf["transaction.timeout.ms"] = self.transaction_timeout_ms
        return conf

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict safe to log (secrets masked, passthrough values hidden)."""
        data = self.model_dump(mode="json")
        data["kafka"] = {key: "***" for key in self.kafka}
        return data


def read_properties(path: Path) -> dict[str, str]:
    """Read a Java-style ``key=value`` properties file (``#``/``!`` comments, blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read kafka properties file {path}") from exc
    props: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected key=value")
        props[key.strip()] = value.strip()
    return props


def parse_kafka_options(pairs: list[str]) -> dict[str, str]:
    """Turn repeated ``--kafka key=value`` flags into a dict."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kafka expects key=value, got {pair!r}")
        options[key.strip()] = value.strip()
    return options
