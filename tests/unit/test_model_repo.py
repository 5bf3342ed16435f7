"""Model repository rules without a broker: completeness, the settle rule, version policy, refusal, hand-over."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from stream_worker.common.errors import ModelError
from stream_worker.engine.model_repo import (
    ModelRepository,
    ModelWatcher,
    Version,
    initial_model,
    is_complete,
    require_servable,
)


def fake_version(base: Path, number: int, age_s: float = 60.0) -> Path:
    path = base / str(number)
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"pb")
    (path / "variables" / "variables.index").write_bytes(b"ix")
    old = time.time() - age_s
    for p in [path, path / "variables", path / "saved_model.pb", path / "variables" / "variables.index"]:
        os.utime(p, (old, old))
    return path


def test_completeness_and_servable(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        require_servable(tmp_path / "missing")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"")  # no variables/: a copy in progress
    (tmp_path / "not-a-version").mkdir()
    assert not is_complete(tmp_path / "3")
    with pytest.raises(ModelError, match="no complete model version"):
        require_servable(tmp_path)
    fake_version(tmp_path, 2)
    require_servable(tmp_path)
    with pytest.raises(ModelError, match="model version 9 is not in"):
        require_servable(tmp_path, pinned=9)


def test_settle_rule(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path, settle_s=2.0)
    fake_version(tmp_path, 1)
    fresh = fake_version(tmp_path, 2, age_s=0.0)  # just written
    assert [v.number for v, _ in repo.candidates(first_look_ok=True)] == [1]  # 2 changed too recently
    old = time.time() - 60
    for p in fresh.rglob("*"):
        os.utime(p, (old, old))
    os.utime(fresh, (old, old))
    # The watcher wants the same listing twice: the first look only records it.
    assert [v.number for v, _ in repo.candidates()] == [1]
    assert [v.number for v, _ in repo.candidates()] == [2, 1]
    (fresh / "variables" / "variables.data-00000-of-00001").write_bytes(b"more")  # still being copied
    assert [v.number for v, _ in repo.candidates()] == [1]


def test_pinned_policy_prefers_pin_then_newest(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        fake_version(tmp_path, n)
    repo = ModelRepository(tmp_path, pinned=2, settle_s=0.5)
    assert [v.number for v, _ in repo.candidates(first_look_ok=True)] == [2, 3, 1]
    shutil.rmtree(tmp_path / "2")
    assert [v.number for v, _ in repo.candidates(first_look_ok=True)] == [3, 1]


def test_initial_model_skips_a_broken_newest(tmp_path: Path) -> None:
    for n in (1, 2):
        fake_version(tmp_path, n)

    def load(v: Version) -> str:
        if v.number == 2:
            raise ModelError("broken")
        return f"model-{v.number}"

    assert initial_model(ModelRepository(tmp_path, settle_s=0.5), load) == (1, "model-1")
    with pytest.raises(ModelError, match="could be loaded"):
        initial_model(ModelRepository(tmp_path, settle_s=0.5), lambda v: (_ for _ in ()).throw(ModelError("no")))


def test_watcher_swaps_refuses_and_falls_back(tmp_path: Path) -> None:
    fake_version(tmp_path, 1)
    repo = ModelRepository(tmp_path, settle_s=0.2)
    refused: list[tuple[int, str]] = []
    loads: list[int] = []

    def load(v: Version) -> str:
        loads.append(v.number)
        if (v.path / "BROKEN").exists():
            raise ModelError("corrupt")
        return f"model-{v.number}"

    watcher = ModelWatcher(
        repo, load, serving=1, poll_interval_s=0, on_refused=lambda v, r: refused.append((v.number, str(r)))
    )
    watcher.check_once()
    assert watcher.take() is None  # nothing new

    fake_version(tmp_path, 2)
    watcher.check_once()  # first look at 2
    watcher.check_once()  # same listing again: settled, loaded, parked
    assert watcher.take() == (2, "model-2")
    assert watcher.take() is None  # handed over once

    broken = fake_version(tmp_path, 3)
    (broken / "BROKEN").write_bytes(b"")
    os.utime(broken, (time.time() - 60, time.time() - 60))
    os.utime(broken / "BROKEN", (time.time() - 60, time.time() - 60))
    for _ in range(3):
        watcher.check_once()
    assert watcher.take() is None
    assert refused == [(3, "corrupt")] and loads.count(3) == 1  # refused once, not retried while unchanged

    shutil.rmtree(tmp_path / "2")  # the served version disappears: fall back to the newest that loads
    watcher.check_once()
    watcher.check_once()
    assert watcher.take() == (1, "model-1")
