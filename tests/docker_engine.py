"""The Docker engine as the deploy tests use it: the ``docker`` CLI on PATH, as a user runs it.

``require_engine()`` fails (never skips) with what to do when no engine answers.  ``build_image()`` builds
``deploy/scorer.Dockerfile`` from the repository root and records how long it took (``.cache/deploy/builds.jsonl``,
the README's build-time figures).  Where the public base image cannot be pulled (no registry reachable), the
locally made one (``scripts/make_base_image.sh``) is passed as ``BASE_IMAGE``.  The Docker CLI without its buildx
plugin refuses BuildKit builds, so then the classic builder builds (the Dockerfile needs nothing of BuildKit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("SCORER_TEST_IMAGE", "sentiment-scorer:test")
PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "scorer-base:bookworm-local"
BUILDS = REPO / ".cache" / "deploy" / "builds.jsonl"


def docker(*args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None) -> Any:
    """``docker ARGS``; its output as text.  A failure raises with docker's own message."""
    answer = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and answer.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({answer.returncode}): {answer.stderr.strip()}")
    return answer


def require_engine() -> None:
    if shutil.which("docker") is None:
        pytest.fail("the deploy tests need the docker CLI and a Docker engine (scripts/setup_docker.sh)")
    if docker("info", check=False, timeout=30).returncode != 0:
        pytest.fail("no Docker engine answers 'docker info': start one (as root: scripts/setup_docker.sh)")


def _classic_builder() -> dict[str, str]:
    has_buildx = docker("buildx", "version", check=False, timeout=30).returncode == 0
    return {} if has_buildx else {"DOCKER_BUILDKIT": "0"}


def base_image() -> str:
    """The public base when it is here or can be pulled; else the locally made one."""
    if docker("image", "inspect", PUBLIC_BASE, check=False).returncode == 0:
        return PUBLIC_BASE
    if docker("pull", PUBLIC_BASE, check=False, timeout=120).returncode == 0:
        return PUBLIC_BASE
    made = subprocess.run(
        ["bash", str(REPO / "scripts" / "make_base_image.sh"), LOCAL_BASE], capture_output=True, text=True, timeout=900
    )
    assert made.returncode == 0, f"could not make the local base image: {made.stderr[-2000:]}"
    return LOCAL_BASE


def build_image(tag: str = IMAGE) -> dict[str, Any]:
    """Build the scorer image (layer cache kept between runs); returns what was measured."""
    base = base_image()
    had_image = docker("image", "inspect", tag, check=False).returncode == 0
    t0 = time.monotonic()
    answer = _build(tag, REPO, base, "-f", "deploy/scorer.Dockerfile")
    seconds = time.monotonic() - t0
    size = int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())
    base_size = int(docker("image", "inspect", "-f", "{{.Size}}", base).stdout.strip())
    cached = _step_cached(answer.stdout + answer.stderr, "pip install -q -r")
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": base,
        "seconds": round(seconds, 1),
        "dependency_layer_cached": cached,
        "had_image": had_image,
        "image_bytes": size,
        "base_bytes": base_size,
    }
    BUILDS.parent.mkdir(parents=True, exist_ok=True)
    with BUILDS.open("a") as out:
        out.write(json.dumps(record) + "\n")
    return record


def _step_cached(output: str, marker: str) -> bool:
    """Whether the build step whose command holds ``marker`` came from the layer cache (both builders say so)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if marker in line:
            return any("CACHED" in later or "Using cache" in later for later in lines[i : i + 3])
    return False


def health(name: str) -> str:
    answer = docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.Status}}", name)
    return str(answer.stdout.strip())


def wait_healthy(name: str, timeout_s: float = 400) -> None:
    """Until the image's HEALTHCHECK says healthy; fails with the container's log when it exits or never does."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = health(name)
        if state.startswith("healthy"):
            return
        if not state.endswith("|running"):
            break
        time.sleep(1)
    logs = docker("logs", "--tail", "40", name, check=False)
    raise AssertionError(f"container {name} not healthy ({state}) in {timeout_s:.0f}s:\n{logs.stdout}{logs.stderr}")


def exit_code(name: str) -> int:
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip())


def remove(name: str) -> None:
    docker("rm", "-f", name, check=False)


KAFKA_STANDIN = "scorer-test/kafka-standin:4.4.0"
PROMETHEUS_STANDIN = "scorer-test/prometheus-standin:debian"
STANDINS = REPO / "tests" / "deploy"


def build_kafka_standin() -> str:
    """The official Kafka image's local stand-in (tests/deploy/kafka_standin), from Maven Central's jars."""
    libs = REPO / ".cache" / "deploy" / "kafka-standin-libs"
    if not (libs / ".complete").exists():
        fetched = subprocess.run(
            ["mvn", "-q", "-f", str(STANDINS / "kafka_standin" / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert fetched.returncode == 0, f"could not fetch the Kafka jars: {fetched.stdout[-2000:]}{fetched.stderr}"
        (libs / ".complete").touch()
    context = REPO / ".cache" / "deploy" / "kafka-standin-context"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(STANDINS / "kafka_standin", context)
    shutil.copytree(libs, context / "libs", ignore=shutil.ignore_patterns(".complete"))
    _build(KAFKA_STANDIN, context)
    return KAFKA_STANDIN


def build_prometheus_standin() -> str:
    """The official Prometheus image's local stand-in: Debian's prometheus package, same entry point and flags."""
    _build(PROMETHEUS_STANDIN, STANDINS / "prometheus_standin")
    return PROMETHEUS_STANDIN


def _build(tag: str, context: Path, base: str | None = None, *flags: str) -> Any:
    """``docker build`` of ``context`` on ``base`` (default: ``base_image()``); fails with the build's output tail."""
    answer = docker("build", *flags, "--build-arg", f"BASE_IMAGE={base or base_image()}", "-t", tag, str(context),
                    timeout=1800, check=False, env=_classic_builder())  # fmt: skip
    assert answer.returncode == 0, f"docker build of {tag} failed:\n{(answer.stdout + answer.stderr)[-4000:]}"
    return answer


def compose_command() -> list[str]:
    """``docker compose`` (v2 plugin) when installed, else Debian's ``docker-compose`` (v1.29): the same file and
    arguments work with both."""
    if docker("compose", "version", check=False, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither 'docker compose' nor 'docker-compose' is installed (scripts/setup_docker.sh installs one)")
