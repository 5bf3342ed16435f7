"""A three-node Apache Kafka KRaft cluster on loopback, for fault-injection tests.

Every node is a combined broker + controller; ``controller.quorum.voters`` names all three, all share one
cluster id and each log dir is formatted with ``StorageTool``.  Replication defaults are the production ones the
fault suite is about: replication factor 3 and ``min.insync.replicas=2`` for data topics, the consumer offsets
topic and the transaction state log.  ``kill(n)`` (SIGKILL), ``terminate(n)`` (SIGTERM) and ``start(n)`` (the same
node again: same node id, ports and data dir) bounce one node; ``wait_full_isr`` waits until every partition of
the named topics is back to three in-sync replicas.

The jars, the Java binary, the log4j2 config, the JVM command line, the storage format, the launch, the wait for a
node to serve and the stop are those of the single node (``tests/brokers.py``).  Heaps are small and the JIT is
C1-only: three JVMs share two cores with the workers.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

try:
    from tests import brokers
except ModuleNotFoundError:  # tests/ itself on sys.path
    import brokers  # type: ignore[no-redef]

from stream_worker.tools.broker import free_port

NODES = 3


@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class KafkaCluster:
    """``KafkaCluster().start()``; nodes are numbered 1..3 like their ``node.id``."""

    kind = "kafka-cluster"

    def __init__(
        self,
        libs_dir: Path | None = None,
        heap: str = "320m",
        startup_timeout: float = 300.0,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        self.libs_dir = libs_dir
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.extra_config = dict(extra_config or {})
        self.workdir: Path | None = None
        self.nodes: dict[int, _Node] = {}
        self.cluster_id = brokers.new_cluster_id()
        self.startup_seconds: float | None = None

    # --- addresses --------------------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes.values())

    def running(self) -> list[int]:
        return [n for n, node in self.nodes.items() if node.proc is not None and node.proc.poll() is None]

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        node = self.nodes.get(node_id)
        return "(no log)" if node is None else brokers.tail(node.log_file, lines)

    # --- configuration ----------------------------------------------------------------------------------------
    def _voters(self) -> str:
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())

    def _properties(self, node: _Node) -> str:
        cfg = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": self._voters(),
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.replica.fetchers": "1",
            "background.threads": "2",
            "log.retention.check.interval.ms": "600000",
            # A bounced node must come back fast: short controller and replica timeouts on loopback.
            "replica.lag.time.max.ms": "10000",
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "6000",
            "controlled.shutdown.enable": "true",
        }
        cfg.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in cfg.items())

    def _jvm(self, node: _Node) -> list[str]:
        assert self.libs_dir is not None
        extra = ("-XX:CICompilerCount=1", "-Xss512k")
        return brokers.jvm_command(brokers._java(), self.libs_dir, node.workdir, self.heap, *extra)

    # --- lifecycle --------------------------------------------------------------------------------------------
    def start_cluster(self) -> KafkaCluster:
        """Format the three log dirs (in parallel), start the three nodes, wait until all serve as one cluster."""
        t0 = time.monotonic()
        self.libs_dir = self.libs_dir or brokers.fetch_kafka_libs()
        self.workdir = Path(tempfile.mkdtemp(prefix="kafka-cluster-"))
        used: set[int] = set()

        def port() -> int:
            p = free_port()
            while p in used:
                p = free_port()
            used.add(p)
            return p

        for node_id in range(1, NODES + 1):
            workdir = self.workdir / f"node-{node_id}"
            workdir.mkdir()
            self.nodes[node_id] = _Node(node_id, port(), port(), workdir)
        formats = []
        for node in self.nodes.values():
            props = brokers.write_node_files(node.workdir, self._properties(node))
            formats.append(brokers.start_format(self._jvm(node), self.cluster_id, props))
        for fmt in formats:
            brokers.finish_format(fmt, timeout=180)
        try:
            for node_id in self.nodes:
                self._launch(node_id)
            deadline = time.monotonic() + self.startup_timeout  # for the JVMs' start, not the fetch and formats
            for node_id in self.nodes:
                self._wait_serving(node_id, deadline)
            self.wait_brokers(NODES, timeout_s=max(10.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _launch(self, node_id: int) -> None:
        node = self.nodes[node_id]
        assert node.proc is None or node.proc.poll() is not None, f"node {node_id} is running"
        node.proc = brokers.launch(self._jvm(node), node.workdir / "server.properties", node.log_file)

    def _wait_serving(self, node_id: int, deadline: float) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        name = f"Kafka node {node_id} (log {node.log_file})"
        brokers.wait_serving(node.proc, node.port, deadline, name, lambda: self.log_tail(node_id))

    def start(self, node_id: int, timeout_s: float = 300.0) -> float:
        """Restart node ``node_id`` (same id, ports and data); returns the seconds until it serves again."""
        t0 = time.monotonic()
        self._launch(node_id)
        self._wait_serving(node_id, t0 + timeout_s)
        self.wait_brokers(len(self.running()), timeout_s=max(5.0, t0 + timeout_s - time.monotonic()))
        return time.monotonic() - t0

    def kill(self, node_id: int) -> None:
        """SIGKILL: no controlled shutdown, unflushed page cache stays (the process dies, not the machine)."""
        self._signal(node_id, signal.SIGKILL, 30.0)

    def terminate(self, node_id: int, timeout_s: float = 90.0) -> None:
        """SIGTERM: controlled shutdown (leadership moves away first), then exit."""
        self._signal(node_id, signal.SIGTERM, timeout_s)

    def _signal(self, node_id: int, sig: int, timeout_s: float) -> None:
        proc = self.nodes[node_id].proc
        assert proc is not None and proc.poll() is None, f"node {node_id} is not running"
        proc.send_signal(sig)
        brokers.wait_or_kill(proc, timeout_s)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes.values():
            if node.proc is not None:
                brokers.wait_or_kill(node.proc, 30)
        self.workdir = brokers.discard_workdir(self.workdir)

    def __enter__(self) -> KafkaCluster:
        return self.start_cluster()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- admin helpers ----------------------------------------------------------------------------------------
    def admin(self):  # type: ignore[no-untyped-def]
        from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 5000})

    def wait_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until the metadata names ``count`` live brokers."""
        admin = self.admin()
        deadline = time.monotonic() + timeout_s
        seen = -1
        while time.monotonic() < deadline:
            try:
                seen = len(admin.list_topics(timeout=5.0).brokers)
            except Exception:  # a node that is still starting answers nothing yet
                seen = -1
            if seen >= count:
                return
            time.sleep(0.25)
        raise TimeoutError(f"{seen} brokers registered after {timeout_s:.0f}s, wanted {count}")

    def create_topic(
        self, prefix: str, partitions: int, config: Mapping[str, str] | None = None, timeout_s: float = 180.0
    ) -> str:
        """A fresh ``<prefix>-<uuid>`` topic, replication factor 3, once every partition has a leader and full ISR."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        spec = NewTopic(name, num_partitions=partitions, replication_factor=NODES, config=dict(config or {}))
        admin = self.admin()  # keep the handle alive until the future resolves
        admin.create_topics([spec], operation_timeout=timeout_s, request_timeout=timeout_s)[name].result(timeout_s)
        self.wait_full_isr([name], timeout_s)
        return name

    def under_replicated(self, topics: Iterable[str] | None = None) -> list[str]:
        """``topic[partition]`` of every partition (of ``topics``, default all) without a leader or full ISR."""
        md = self.admin().list_topics(timeout=5.0)
        names = list(topics) if topics is not None else list(md.topics)
        bad = []
        for name in names:
            tmd = md.topics.get(name)
            if tmd is None or tmd.error is not None:
                bad.append(f"{name}[?]")
                continue
            for pid, p in tmd.partitions.items():
                if p.leader < 0 or p.error is not None or len(p.isrs) < len(p.replicas):
                    bad.append(f"{name}[{pid}]")
        return bad

    def wait_full_isr(self, topics: Iterable[str] | None = None, timeout_s: float = 120.0) -> None:
        """Wait until every partition of ``topics`` (default: all, internal ones included) has its full ISR."""
        names = list(topics) if topics is not None else None
        deadline = time.monotonic() + timeout_s
        bad: list[str] = ["(not checked)"]
        while time.monotonic() < deadline:
            try:
                bad = self.under_replicated(names)
            except Exception as exc:  # metadata not answered during a bounce
                bad = [repr(exc)]
            if not bad:
                return
            time.sleep(0.5)
        raise TimeoutError(f"partitions without full ISR after {timeout_s:.0f}s: {bad[:10]}")
