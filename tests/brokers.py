"""Real brokers for integration tests.

``KafkaBroker`` runs one Apache Kafka KRaft node (combined broker + controller) straight from the
jars that ``scripts/fetch_kafka.sh`` puts in ``.cache/kafka/<version>/libs``.  The tansu broker
comes from ``stream_worker.tools.broker``.  Every broker object has ``.bootstrap_servers`` and ``.kind``.

Imports of confluent_kafka happen inside functions: this module is imported by tests/conftest.py,
which the training environment (no Kafka client) loads too.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stream_worker.tools.broker import free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO / "scripts" / "fetch_kafka.sh"


class Broker(Protocol):
    kind: str

    @property
    def bootstrap_servers(self) -> str: ...


@dataclass
class ExternalBroker:
    """A cluster someone else runs (TEST_KAFKA_BOOTSTRAP=host:port)."""

    bootstrap_servers: str
    kind: str = "kafka"

    def stop(self) -> None:
        pass


def fetch_kafka_libs() -> Path:
    """Libs dir of the pinned Kafka version; downloads it with Maven on first use."""
    override = os.environ.get("KAFKA_LIBS_DIR")
    if override:
        return Path(override)
    proc = subprocess.run(["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/fetch_kafka.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of a UUID) that never starts with '-'.

    ``kafka-storage format -t ID`` parses its arguments with argparse, so an id beginning with '-' (one in 64 of
    random ones) is read as an option and the format fails ("expected one argument").  Kafka's own
    ``Uuid.randomUuid`` skips such ids for the same reason; we draw again too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java not found: Apache Kafka 4.x needs Java 17+ on PATH or JAVA_HOME")
    return found


_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


# --- pieces shared by the Apache Kafka launchers: KafkaBroker, secure_kafka.py, kafka_cluster.py ----------------
def write_node_files(workdir: Path, properties: str) -> Path:
    """``server.properties`` (returned) and ``log4j2.properties`` of one node in ``workdir``."""
    props = workdir / "server.properties"
    props.write_text(properties)
    (workdir / "log4j2.properties").write_text(_LOG4J2)
    return props


def jvm_command(java: str, libs: Path, workdir: Path, heap: str, *extra: str) -> list[str]:
    """The JVM and its flags for one node (logs into ``workdir``); the main class and its arguments follow."""
    return [
        java,
        f"-Xmx{heap}",
        "-Xms64m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # C1 only: much less JIT CPU on a small shared machine
        *extra,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={workdir}",
        "-cp",
        f"{libs}/*",
    ]


def start_format(jvm: list[str], cluster_id: str, props: Path, *extra: str) -> subprocess.Popen[str]:
    """Start ``kafka-storage format`` of the log dirs named in ``props``; ``finish_format`` waits for it."""
    cmd = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")


def finish_format(proc: subprocess.Popen[str], timeout: float) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"kafka-storage format failed ({proc.returncode}):\n{out}")


def launch(jvm: list[str], props: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """Start the node; its output is appended to ``log_file`` (a restart keeps the earlier log)."""
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def wait_serving(
    proc: subprocess.Popen[bytes], port: int, deadline: float, name: str, log_tail: Callable[[], str]
) -> None:
    """Until the node on 127.0.0.1:``port`` serves metadata; fails at ``deadline`` (monotonic) or if it exits."""
    wait_until_serving(proc, "127.0.0.1", port, deadline, name, log_tail, 0.25)


def tail(log_file: Path, lines: int) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait ``timeout`` seconds for a signalled node to exit, then SIGKILL it."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def discard_workdir(workdir: Path | None) -> Path | None:
    """Delete ``workdir`` unless KEEP_KAFKA_LOGS is set; returns what the launcher's ``workdir`` becomes."""
    if workdir is None or os.environ.get("KEEP_KAFKA_LOGS"):
        return workdir
    shutil.rmtree(workdir, ignore_errors=True)
    return None


class KafkaBroker:
    """One Apache Kafka KRaft node on free loopback ports, with a throw-away log dir."""

    kind = "kafka"

    def __init__(
        self,
        libs_dir: Path | None = None,
        heap: str = "384m",
        startup_timeout: float = 300.0,
        auto_create_topics: bool = False,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        self.libs_dir = libs_dir
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.auto_create_topics = auto_create_topics
        self.extra_config = dict(extra_config or {})
        self.port = 0
        self.controller_port = 0
        self.workdir: Path | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 60) -> str:
        return "(no log)" if self.workdir is None else tail(self.log_file, lines)

    def _properties(self, data_dir: Path) -> str:
        cfg = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.check.interval.ms": "600000",
        }
        cfg.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in cfg.items())

    def start(self) -> KafkaBroker:
        if self._proc is not None:
            return self
        t0 = time.monotonic()
        libs = self.libs_dir or fetch_kafka_libs()
        self.libs_dir = libs
        java = _java()
        self.workdir = Path(tempfile.mkdtemp(prefix="kafka-test-"))
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        props = write_node_files(self.workdir, self._properties(self.workdir / "data"))
        jvm = jvm_command(java, libs, self.workdir, self.heap)
        finish_format(start_format(jvm, new_cluster_id(), props), timeout=120)
        self._proc = launch(jvm, props, self.log_file)
        try:
            self._wait_ready(time.monotonic())  # the bound is for the JVM's start, not the jar fetch and format
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self._proc is not None
        name = f"Apache Kafka (log {self.log_file})"
        wait_serving(self._proc, self.port, t0 + self.startup_timeout, name, self.log_tail)

    def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            wait_or_kill(proc, timeout)
        self.workdir = discard_workdir(self.workdir)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _servers(broker: Broker | str) -> str:
    return broker if isinstance(broker, str) else broker.bootstrap_servers


def new_topic(
    broker: Broker | str,
    partitions: int = 1,
    prefix: str = "test",
    config: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> str:
    """Create a fresh ``<prefix>-<uuid>`` topic and wait until every partition has a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = f"{prefix}-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": _servers(broker)})
    spec = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    admin.create_topics([spec], operation_timeout=timeout, request_timeout=timeout)[name].result(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            md = admin.list_topics(topic=name, timeout=5.0).topics.get(name)
        except Exception:  # a busy broker may not answer one metadata request in time: ask again
            md = None
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in md.partitions.values())
        ):
            return name
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} not ready after {timeout:.0f}s: {md!r}")
        time.sleep(0.1)
