"""Fixtures of the deploy tests: the scorer image, built once per session from ``deploy/scorer.Dockerfile``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_engine import IMAGE, build_image, require_engine


@pytest.fixture(scope="session")
def scorer_image() -> Iterator[str]:
    require_engine()
    build = build_image(IMAGE)
    print(f"scorer image {IMAGE}: {build}")
    yield IMAGE


@pytest.fixture(scope="session")
def mounted_models(toy_model_dir: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy model repository, readable by the image's non-root user (pytest's temporary folders are 0700)."""
    root = tmp_path_factory.mktemp("mounted", numbered=True)
    target = root / "sentiment"
    shutil.copytree(toy_model_dir, target)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    parent = root
    while parent != parent.parent and parent != Path("/tmp"):  # every folder above must be searchable too
        parent.chmod(parent.stat().st_mode | 0o011)
        parent = parent.parent
    return target
