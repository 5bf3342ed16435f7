"""A real Schema Registry for integration tests: Apicurio Registry (Apache-2.0) from Maven Central.

``scripts/fetch_registry.sh`` downloads and unpacks it into ``.cache/registry/<version>``; ``ApicurioRegistry``
runs ``quarkus-run.jar`` on a free port with a Java >= 21 found on this machine (``JAVA_HOME``, ``PATH``, then the
JVM directory; never a hard-coded path).  Storage is an H2 database in a file under the registry's work dir, so
``restart()`` keeps every schema and id, as a production registry's storage does.  The management interface
(health, metrics) listens on a free loopback port instead of its default 9000, so parallel runs do not collide.
The Confluent-compatible API is ``.url`` (``.../apis/ccompat/v7``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from tests.brokers import REPO, discard_workdir, tail, wait_or_kill
except ModuleNotFoundError:  # tests/ itself on sys.path
    from brokers import REPO, discard_workdir, tail, wait_or_kill  # type: ignore[no-redef]

from stream_worker.tools.broker import free_port

FETCH_SCRIPT = REPO / "scripts" / "fetch_registry.sh"
MIN_JAVA = 21


def fetch_registry_app() -> Path:
    """The folder holding quarkus-run.jar; downloads Apicurio Registry with Maven on first use."""
    proc = subprocess.run(["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/fetch_registry.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java(minimum: int = MIN_JAVA) -> str:
    """A ``java`` of at least ``minimum``: JAVA_HOME, then PATH, then every JDK under the JVM directory."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    for jvm_dir in (Path("/usr/lib/jvm"), Path("/usr/java"), Path("/opt/java")):
        if jvm_dir.is_dir():
            candidates.extend(str(p / "bin" / "java") for p in sorted(jvm_dir.iterdir(), reverse=True))
    seen: list[str] = []
    for java in candidates:
        if java in seen or not os.access(java, os.X_OK):
            continue
        seen.append(java)
        if java_major(java) >= minimum:
            return java
    raise RuntimeError(f"Apicurio Registry needs Java >= {minimum}; none found (tried {seen}); set JAVA_HOME")


class ApicurioRegistry:
    """One Apicurio Registry process; ``start``, ``stop``, ``restart`` (same port, same storage)."""

    def __init__(self, startup_timeout: float = 600.0, heap: str = "384m") -> None:
        self.startup_timeout = startup_timeout
        self.heap = heap
        self.port = 0
        self.workdir: Path | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._app: Path | None = None
        self._java: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "registry.log"

    def start(self) -> ApicurioRegistry:
        t0 = time.monotonic()
        self._app = self._app or fetch_registry_app()
        self._java = self._java or find_java()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="registry-test-"))
            self.port = free_port()
        command = [
            self._java,
            f"-Xmx{self.heap}",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dquarkus.management.host=127.0.0.1",
            "-Dquarkus.management.port=0",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.workdir / 'db' / 'registry'}",
            f"-Dapicurio.storage.snapshot.location={self.workdir}",
            f"-Dapicurio.import.work-dir={self.workdir}",
            "-jar",
            "quarkus-run.jar",
        ]
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                command, cwd=self._app, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"Apicurio Registry exited ({self._proc.returncode}):\n{tail(self.log_file, 40)}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Apicurio Registry not serving on {self.url} after {self.startup_timeout:.0f}s:\n"
                    f"{tail(self.log_file, 40)}"
                )
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the process (its storage stays until ``close``)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            wait_or_kill(proc, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.workdir = discard_workdir(self.workdir)

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
