"""The shared batching + scoring engine on a real (small) SavedModel: futures, batching, flush, overload,
failure isolation, model swap between batches; and the precision choice."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from stream_worker.common.errors import ScoringFailed
from stream_worker.common.metrics import Metrics
from stream_worker.engine.inference import Engine, Overloaded, Scored
from stream_worker.engine.score import Scorer, choose_precision, cpu_flags
from tests.toy_model import POISON


@pytest.fixture(scope="module")
def scorer(toy_model_dir: Path) -> Scorer:
    return Scorer.load(toy_model_dir)


def test_each_future_gets_its_own_score_in_few_batches(scorer: Scorer) -> None:
    metrics = Metrics()
    engine = Engine(scorer, max_batch_size=8, max_wait_ms=50, token_budget=4096, sort_window=2, metrics=metrics)
    engine.start()
    texts = [("good " * (i % 5 + 1)) if i % 2 else ("bad " * (i % 3 + 1)) for i in range(40)]
    futures = [engine.submit(t, len(t) // 4 + 3) for t in texts]
    results = [f.result(timeout=30) for f in futures]
    engine.stop()
    expected = scorer(texts)
    assert all(isinstance(r, Scored) and r.version == "7" for r in results)
    assert [round(r.score, 5) for r in results if isinstance(r, Scored)] == [round(float(s), 5) for s in expected]
    batches = metrics.batch_size.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < len(texts) / 2, "texts must share batches"


def test_flush_overload_and_isolated_failures(scorer: Scorer) -> None:
    engine = Engine(scorer, max_batch_size=4, max_wait_ms=60_000, token_budget=4096, sort_window=4, max_queue=6)
    engine.start()
    futures = [engine.submit(t, 3) for t in ["good", f"x {POISON}", "bad", "fine", POISON]]
    assert engine.waiting() == 5  # not due: window 16, wait 60 s
    engine.submit("one more", 3)
    with pytest.raises(Overloaded):
        engine.submit("too many", 3)
    assert engine.flush(30)
    results = [f.result(0) for f in futures]
    assert isinstance(results[1], ScoringFailed) and isinstance(results[4], ScoringFailed)
    assert isinstance(results[0], Scored) and results[0].score > 0.5
    assert isinstance(results[2], Scored) and results[2].score < 0.5
    engine.stop()
    with pytest.raises(Overloaded):
        engine.submit("after stop", 3)


def test_model_swaps_between_batches(toy_model_dir: Path, tmp_path: Path, scorer: Scorer) -> None:
    shutil.copytree(toy_model_dir / "7", tmp_path / "8")
    new = Scorer.load(tmp_path)
    assert new.version == "8"

    class OneSwap:
        def __init__(self) -> None:
            self.pending: tuple[int, object] | None = None

        def take(self) -> tuple[int, object] | None:
            ready, self.pending = self.pending, None
            return ready

    watcher = OneSwap()
    swaps: list[tuple[str, str]] = []
    engine = Engine(
        scorer,
        max_batch_size=4,
        max_wait_ms=0,
        token_budget=4096,
        watcher=watcher,  # type: ignore[arg-type]
        on_swap=lambda old, new: swaps.append((old.version, new.version)),
    )
    engine.start()
    first = engine.submit("good", 3).result(30)
    watcher.pending = (8, new)
    second = engine.submit("good", 3).result(30)
    engine.stop()
    assert isinstance(first, Scored) and isinstance(second, Scored)
    assert (first.version, second.version) == ("7", "8") and swaps == [("7", "8")]


def test_concurrent_submitters(scorer: Scorer) -> None:
    engine = Engine(scorer, max_batch_size=16, max_wait_ms=5, token_budget=4096, sort_window=1).start()
    out: dict[int, float] = {}

    def client(n: int) -> None:
        result = engine.submit("great " * (n % 4 + 1), 4).result(30)
        assert isinstance(result, Scored)
        out[n] = result.score

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.stop()
    assert len(out) == 32 and all(s > 0.5 for s in out.values())


@pytest.mark.parametrize(
    ("requested", "flags", "expected"),
    [
        ("auto", {"avx512f", "avx512_bf16"}, "bf16"),
        ("auto", {"avx512f", "amx_bf16", "amx_tile"}, "bf16"),
        ("auto", {"avx2", "avx512f"}, "fp32"),
        ("bf16", {"avx2"}, "fp32"),  # not native here: falls back
        ("bf16", {"amx_bf16"}, "bf16"),
        ("fp32", {"amx_bf16", "avx512_bf16"}, "fp32"),
    ],
)
def test_precision_choice(requested: str, flags: set[str], expected: str) -> None:
    assert choose_precision(requested, flags)[0] == expected


def test_cpu_flags_parse() -> None:
    info = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx512_bf16 amx_tile\n"
    assert cpu_flags(info) == {"fpu", "sse", "avx512_bf16", "amx_tile"}
    assert cpu_flags("no flags here") == set()


def test_bf16_on_a_cpu_without_it_falls_back_with_a_log_line() -> None:
    import subprocess
    import sys

    code = (
        "from stream_worker.common import logs; from stream_worker.engine import score; logs.configure('INFO'); "
        "print(score.configure_precision('bf16', {'avx2', 'avx512f'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fp32"
    assert "bf16 requested but not supported natively here" in proc.stderr
