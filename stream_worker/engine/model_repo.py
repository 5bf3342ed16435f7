"""Model repository and rollout: which version to serve, and loading a new one while the current one scores.

The repository is what TFX Pusher writes: ``<model_dir>/<integer version>/`` (TF Serving's layout).  Folders
whose name is not an integer (``.tmp-4``, ``4.partial``) are ignored, so a pusher that copies to a temporary
name and renames it at the end is always safe.

Version policy (TF Serving's ``model_version_policy`` is the anchor):

* ``latest`` (default): serve the newest *complete* version.
* ``specific`` (``--model-version N``): serve N; if N's folder disappears, serve the newest remaining version.
* If the version being served is removed, the newest remaining version is loaded.

A version folder is *complete* when ``saved_model.pb`` and ``variables/`` exist, and *settled* when, in addition,
no file or folder in it changed during the last ``settle_s`` seconds and its listing (names, sizes, mtimes) is the
same in two consecutive checks.  Only settled versions are loaded by the watcher, so a folder that a pusher is
still copying file by file is never loaded half-written.  At start, a complete version whose newest change is
older than ``settle_s`` is taken at once (no second look), else the start waits for it to settle.

Rollout, in steps:

1. ``ModelWatcher`` checks the repository every ``poll_interval_s`` in a background thread.
2. When the policy names a settled version other than the one served, the thread loads it, checks the contract
   and warms it up (one maximum-size batch) while the current version keeps scoring in the main loop.
3. The loaded scorer waits in a one-slot hand-over; the main loop takes it *between two batches*
   (``take()``), so every batch, and every output record, is scored by exactly one version and says which.
4. A version that fails to load, breaks the contract or fails warm-up is refused: a log line,
   ``scorer_model_load_failures_total{reason}``, and the current version keeps serving.  It is not tried again
   until its folder changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stream_worker.common.errors import ModelError

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Version:
    number: int
    path: Path


def versions(model_dir: Path) -> list[Version]:
    """Integer-named folders under ``model_dir``, newest first (complete or not)."""
    if not model_dir.is_dir():
        raise ModelError(f"model repository {model_dir} does not exist")
    found = [Version(int(c.name), c) for c in model_dir.iterdir() if c.name.isdigit() and c.is_dir()]
    return sorted(found, key=lambda v: v.number, reverse=True)


def is_complete(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() and (path / "variables").is_dir()


def fingerprint(path: Path) -> Fingerprint:
    """(relative path, size, mtime_ns) of every file and folder under ``path``, sorted."""
    entries = []
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # vanished while we looked: the next check sees the new state
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    st = os.stat(path)
    entries.append((".", 0, st.st_mtime_ns))
    return tuple(sorted(entries))


def quiet_for(fp: Fingerprint) -> float:
    """Seconds since the newest change recorded in a fingerprint."""
    newest = max((mtime for _, _, mtime in fp), default=0)
    return time.time() - newest / 1e9


class ModelRepository:
    """Chooses the version to serve under the policy; remembers listings to tell settled folders apart."""

    def __init__(self, model_dir: Path, pinned: int | None = None, settle_s: float = 3.0) -> None:
        self.model_dir = model_dir
        self.pinned = pinned
        self.settle_s = settle_s
        self._seen: dict[int, Fingerprint] = {}

    def settled(self, version: Version, first_look_ok: bool = False) -> Fingerprint | None:
        """The version's fingerprint when it is complete and settled, else None."""
        if not is_complete(version.path):
            return None
        fp = fingerprint(version.path)
        previous, self._seen[version.number] = self._seen.get(version.number), fp
        if quiet_for(fp) < self.settle_s:
            return None
        if previous != fp and not first_look_ok:
            return None
        return fp

    def candidates(self, first_look_ok: bool = False) -> list[tuple[Version, Fingerprint]]:
        """Settled versions in the order the policy prefers them (pinned first, then newest first)."""
        found = versions(self.model_dir)
        if self.pinned is not None:
            found.sort(key=lambda v: (v.number != self.pinned, -v.number))
        out = []
        for version in found:
            fp = self.settled(version, first_look_ok)
            if fp is not None:
                out.append((version, fp))
        return out

    def describe(self) -> str:
        try:
            names = [str(v.number) for v in versions(self.model_dir)]
        except ModelError:
            return f"{self.model_dir} does not exist"
        return f"versions found: {', '.join(names) or 'none'}"


Loader = Callable[[Version], object]
T = TypeVar("T")


def require_servable(model_dir: Path, pinned: int | None = None) -> None:
    """Fail fast with a clear ``ModelError`` when the repository cannot serve anything (checked before Kafka)."""
    found = versions(model_dir)
    names = ", ".join(str(v.number) for v in found) or "none"
    if pinned is not None and pinned not in {v.number for v in found}:
        raise ModelError(f"model version {pinned} is not in {model_dir} (versions found: {names})")
    if not any(is_complete(v.path) for v in found):
        raise ModelError(
            f"no complete model version (<integer>/saved_model.pb and variables/) under {model_dir} "
            f"(versions found: {names}); train one with `scorer train`"
        )


def initial_model(repo: ModelRepository, load: Callable[[Version], T], wait_s: float | None = None) -> tuple[int, T]:
    """The version to serve at start, loaded: the policy's first choice that loads; raises ``ModelError``.

    A version still being written is waited for (up to ``wait_s``, default two settle periods + 10 s); a pinned
    version that does not exist is an error; versions that fail to load are skipped with the error logged.
    """
    deadline = time.monotonic() + (wait_s if wait_s is not None else 2 * repo.settle_s + 10)
    failed: dict[int, str] = {}
    while True:
        require_servable(repo.model_dir, repo.pinned)
        found = versions(repo.model_dir)
        for version, _fp in repo.candidates(first_look_ok=True):
            if version.number in failed:
                continue
            try:
                return version.number, load(version)
            except ModelError as exc:
                log.error("model version refused at start", extra={"model_version": version.number, "reason": str(exc)})
                failed[version.number] = str(exc)
        if all(v.number in failed for v in found if is_complete(v.path)):
            raise ModelError(
                f"no version of {repo.model_dir} could be loaded: "
                + "; ".join(f"version {n}: {why}" for n, why in failed.items())
            )
        if time.monotonic() > deadline:
            raise ModelError(f"no version of {repo.model_dir} settled in time ({repo.describe()})")
        time.sleep(0.5)


class ModelWatcher:
    """Background thread: loads the version the policy wants and hands it over (see the module docstring)."""

    def __init__(
        self,
        repo: ModelRepository,
        load: Loader,
        serving: int,
        poll_interval_s: float,
        on_refused: Callable[[Version, ModelError], None],
    ) -> None:
        self._repo = repo
        self._load = load
        self._serving = serving
        self._interval = poll_interval_s
        self._on_refused = on_refused
        self._refused: dict[int, Fingerprint] = {}
        self._ready: tuple[int, object] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        if self._interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def take(self) -> tuple[int, object] | None:
        """The newly loaded (version, scorer), once; called by the main loop between batches."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self._serving = ready[0]
        return ready

    def check_once(self) -> None:
        """One look at the repository; loads and parks a new version if the policy wants one."""
        with self._lock:
            if self._ready is not None:
                return  # the last one is not taken yet
        try:
            candidates = self._repo.candidates()
        except ModelError as exc:
            log.warning("model repository unreadable; serving on", extra={"detail": str(exc)})
            return
        for version, fp in candidates:
            if self._refused.get(version.number) == fp:
                continue  # refused before and unchanged since
            if version.number == self._serving:
                return
            try:
                scorer = self._load(version)
            except ModelError as exc:
                self._refused[version.number] = fp
                self._on_refused(version, exc)
                continue
            with self._lock:
                self._ready = (version.number, scorer)
            return
        # Nothing settled to serve (e.g. every folder removed): keep serving what is loaded.

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check_once()
            except Exception:  # the watcher must never take the worker down
                log.exception("model watcher check failed; serving on")
