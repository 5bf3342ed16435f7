"""A secure single-node Apache Kafka for tests: a TLS listener and a SASL/SCRAM-SHA-512 listener.

Certificates are made for each run with the ``openssl`` command line (no Python dependency): a test CA, a server
certificate for 127.0.0.1/localhost signed by it, and a second CA that signed nothing the broker uses (a client
that trusts only it must refuse the broker).  Listeners, all on loopback:

* ``SSL``            TLS with the PEM key and certificate (``ssl.keystore.type=PEM``); no client certificates.
* ``SASL_PLAINTEXT`` SCRAM-SHA-512; the users are created when the storage is formatted (``--add-scram``).
* ``INTERNAL``       plaintext, for the broker itself and for test set-up (topics); ``CONTROLLER`` for KRaft.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_worker.tools.broker import free_port
from tests.brokers import (
    _java,
    discard_workdir,
    fetch_kafka_libs,
    finish_format,
    jvm_command,
    launch,
    new_cluster_id,
    start_format,
    tail,
    wait_or_kill,
    wait_serving,
    write_node_files,
)

SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the broker's certificate (PEM)
    untrusted_ca: Path  # another CA: trusting only it must fail the handshake
    server_cert: Path
    server_key: Path  # PKCS#8, unencrypted


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr[-2000:]}")


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost (subjectAltName) signed by it, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    key_opts = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", *key_opts, "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN=scorer test {name}", cwd=folder,
        )  # fmt: skip
    _openssl(
        "req", *key_opts, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder
    )  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=folder,
    )  # fmt: skip
    return Certificates(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")


class SecureKafkaBroker:
    """One KRaft node with ``SSL`` and ``SASL_PLAINTEXT`` (SCRAM-SHA-512) listeners; see the module docstring."""

    kind = "kafka"

    def __init__(self, users: dict[str, str], heap: str = "384m", startup_timeout: float = 120.0) -> None:
        self.users = dict(users)
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self.certs: Certificates | None = None
        self.ssl_port = self.sasl_port = self.internal_port = self.controller_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # --- addresses and client configs -------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """The plaintext internal listener (test set-up only: topics)."""
        return f"127.0.0.1:{self.internal_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def ssl_client_config(self, ca: Path | None = None) -> dict[str, Any]:
        assert self.certs is not None
        return {
            "bootstrap.servers": self.ssl_bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(ca or self.certs.ca),
        }

    def sasl_client_config(self, user: str, password: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.sasl_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
        }

    # --- life cycle -------------------------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 60) -> str:
        return "(no log)" if self.workdir is None else tail(self.log_file, lines)

    def _properties(self, data_dir: Path) -> str:
        assert self.certs is not None
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        cfg = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"SSL://127.0.0.1:{self.ssl_port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                f"INTERNAL://127.0.0.1:{self.internal_port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": (
                f"SSL://127.0.0.1:{self.ssl_port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                f"INTERNAL://127.0.0.1:{self.internal_port}"
            ),
            "listener.security.protocol.map": (
                "SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL",
            # TLS: PEM files, no client certificates
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": str(self._keystore()),
            "listener.name.ssl.ssl.client.auth": "none",
            # SASL/SCRAM-SHA-512
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            # small single node
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
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        return "".join(f"{k}={v}\n" for k, v in cfg.items())

    def _keystore(self) -> Path:
        """The broker's PEM keystore: its private key followed by its certificate, in one file."""
        assert self.certs is not None and self.workdir is not None
        path = self.workdir / "server-keystore.pem"
        if not path.exists():
            path.write_text(self.certs.server_key.read_text() + self.certs.server_cert.read_text())
        return path

    def start(self) -> SecureKafkaBroker:
        if self._proc is not None:
            return self
        t0 = time.monotonic()
        libs = fetch_kafka_libs()
        self.workdir = Path(tempfile.mkdtemp(prefix="kafka-secure-test-"))
        self.certs = make_certificates(self.workdir / "certs")
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        self.ssl_port, self.sasl_port, self.internal_port, self.controller_port = sorted(ports)
        props = write_node_files(self.workdir, self._properties(self.workdir / "data"))
        jvm = jvm_command(_java(), libs, self.workdir, self.heap)
        scram = [
            arg
            for user, password in self.users.items()
            for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
        ]
        finish_format(start_format(jvm, new_cluster_id(), props, *scram), timeout=120)
        self._proc = launch(jvm, props, self.log_file)
        try:
            name = f"secure Apache Kafka (log {self.log_file})"
            wait_serving(self._proc, self.internal_port, t0 + self.startup_timeout, name, self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            wait_or_kill(proc, timeout)
        self.workdir = discard_workdir(self.workdir)

    def __enter__(self) -> SecureKafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
