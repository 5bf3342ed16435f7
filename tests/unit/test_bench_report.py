"""The benchmark report renders every target from a run's figures (synthetic figures; no timing is asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_worker.bench.report import write_report
from stream_worker.bench.variants import BASELINE, DEFAULT, NAIVE, PEER, SERVE, Options, Run
from stream_worker.common.settings import Settings


def test_report_lists_every_target(tmp_path: Path) -> None:
    runs: dict[tuple[str, str], Run] = {}
    for variant, short, long in [
        ("model alone, fp32, 1 process x 2 threads", 200, 20),
        (BASELINE, 140, 12),
        (DEFAULT, 150, 14),
        (PEER, 80, 0),
    ]:
        for mix, value in (("short", short), ("long", long)):
            if value:
                runs[(variant, mix)] = Run(variant, mix, [value], [value * 30.0])
    extra: dict[str, Any] = {
        "gemm": [{"fp32": 200.0, "bf16": 400.0}],
        "latency": {0.25: (40, 0.2, 0.3), 0.5: (80, 0.3, 0.5)},
        "cold_start_s": {DEFAULT: [8.0]},
        "rss_mb": {DEFAULT: [900.0]},
        "max_batch_s": {DEFAULT: 0.4},
        "http": {(SERVE, 64): (120.0, 0.4, 0.9), (NAIVE, 64): (60.0, 0.9, 2.0)},
        "pii_us": {"short": 4.0, "long": 80.0},
        "cost": {"mflop_per_token": 10.6, "matrices": 19, "hidden_sizes": [384, 1536]},
    }
    opts = Options(model_dir=tmp_path, output_dir=tmp_path / "out", quick=True, rounds=1)
    info = {"cpu": "Test CPU", "cores": "2", "flags": "avx512f", "commit": "abc1234", "date": "2026-01-01 00:00 UTC"}
    path = write_report(opts, info, runs, extra, {"short": 2700, "long": 7400}, {"short": 100, "long": 10}, Settings())
    text = path.read_text()
    for needle in (
        "Test CPU",
        "≥ 0.9x best model-alone (short)",
        "≥ 2.0x worker x1 fp32",
        "≥ 5x the per-message",
        "p99 at 50% load",
        "≥ 3x the naive server",
        "0.85x the Kafka worker",
        "RSS ≤ 1.5 GiB",
        "cold start to ready ≤ 10 s",
        "anonymization guard",
        "| 64 | 120.0 | 0.400 | 0.900 |",
        "10.6 MFLOP per real token",
    ):
        assert needle in text, needle
    assert "| scorer serve at 64 clients ≥ 3x the naive server | 2.00x | **no** |" in text
    assert (tmp_path / "out" / f"{path.stem}-throughput.png").is_file()


def test_model_cost_is_read_from_the_weights(tmp_path: Path) -> None:
    """Two layer matrices count (2 FLOP per weight per token); an embedding by name and a vocabulary-shaped table
    by shape do not; neither do vectors."""
    import tensorflow as tf

    from stream_worker.bench.runner import model_cost

    module = tf.Module()
    module.up = tf.Variable(tf.zeros([8, 32]), name="layer_0/dense/kernel")
    module.down = tf.Variable(tf.zeros([32, 8]), name="layer_0/output/kernel")
    module.bias = tf.Variable(tf.zeros([32]), name="layer_0/dense/bias")
    module.words = tf.Variable(tf.zeros([64, 8]), name="word_embeddings/embeddings")
    module.table = tf.Variable(tf.zeros([1000, 8]), name="unnamed_table")
    tf.saved_model.save(module, str(tmp_path / "3"))
    cost = model_cost(tmp_path)
    assert cost["matrices"] == 2 and cost["hidden_sizes"] == [8, 32]
    assert cost["mflop_per_token"] == 2 * (8 * 32 + 32 * 8) / 1e6
