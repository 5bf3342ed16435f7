"""The package layout keeps its shape: no import cycle between any two modules of ``stream_worker``, and the layering
contract in pyproject.toml (``lint-imports``, run by ``make lint``) really fails on an import that points upwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("stream_worker", include_external_packages=False)
    assert len(graph.modules) > 30
    assert _cycles(graph) == []


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layering_contract_is_kept_and_catches_an_upward_import(tmp_path: Path) -> None:
    assert _lint_imports(REPO).returncode == 0
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "stream_worker", copy / "stream_worker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    stage = copy / "stream_worker" / "pipeline" / "decode.py"
    stage.write_text(stage.read_text() + "\nfrom stream_worker import cli  # a stage importing the CLI\n")
    broken = _lint_imports(copy)
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout and "stream_worker.pipeline.decode -> stream_worker.cli" in broken.stdout
