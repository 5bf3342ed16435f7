"""``scorer bench`` report: Markdown + PNG plots with the machine, every figure, and the targets met or not."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_worker.bench.variants import Options, Run
    from stream_worker.common.settings import Settings


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _fmt(x: float, digits: int = 0) -> str:
    return "-" if x != x or x == 0 else f"{x:,.{digits}f}"  # NaN or 0 → dash


def write_report(
    opts: Options,
    info: dict[str, str],
    runs: dict[tuple[str, str], Run],
    extra: dict[str, Any],
    tokens: dict[str, int],
    counts: dict[str, int],
    settings: Settings,
) -> Path:
    from stream_worker.bench.variants import BASELINE, DEFAULT, PEER

    opts.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-{info['commit']}{'-quick' if opts.quick else ''}"
    gemm = {k: statistics.mean(g[k] for g in extra["gemm"]) for k in ("fp32", "bf16")}
    cost = extra["cost"]
    mflop = float(cost["mflop_per_token"])
    variants = list(dict.fromkeys(v for v, _ in runs))
    mixes = list(counts)

    def tps(variant: str, mix: str) -> float:
        run = runs.get((variant, mix))
        return run.median() if run else 0.0

    lines = [
        f"# Throughput benchmark — {info['date']}, commit {info['commit']}{' (quick)' if opts.quick else ''}",
        "",
        f"Machine: **{info['cpu']}**, {info['cores']} cores; flags: `{info['flags']}`.",
        f"Command: `scorer bench --model-dir {_relative(opts.model_dir)}{' --quick' if opts.quick else ''} "
        f"--rounds {opts.rounds}` (every variant in each round, interleaved; medians of {opts.rounds} rounds).",
        "",
        "Texts: "
        + "; ".join(
            f"`{m}` = {counts[m]} texts, {tokens[m] / counts[m]:.0f} real tokens each on average" for m in mixes
        )
        + " (short: Rotten Tomatoes snippets; long: 30 snippets joined).",
        f"Worker defaults: batch {settings.max_batch_size}, max wait {settings.max_wait_ms} ms, token budget "
        f"{settings.token_budget}, sort window {settings.sort_window}, processes {settings.processes}, "
        f"precision {settings.precision}.",
        "",
        "## Ceilings (2048x2048 matrix multiply, this run, mean of start and end)",
        "",
        f"fp32 **{gemm['fp32']:.0f} GFLOP/s**, bf16 **{gemm['bf16']:.0f} GFLOP/s**. Model cost, read from the "
        f"served model's weights: **{mflop:.1f} MFLOP per real token** ({cost['matrices']} weight matrices, widths "
        f"{', '.join(str(w) for w in cost['hidden_sizes'])}; 2 FLOP per weight), so GFLOP/s below = real tokens/s "
        f"x {mflop / 1000:.4f}.",
        "",
        "## Throughput (texts/s, median)",
        "",
        "| variant | " + " | ".join(f"{m} texts/s" for m in mixes) + " | long tokens/s | long GFLOP/s | "
        "% fp32 ceiling | % bf16 ceiling | vs baseline (short / long) |",
        "|---|" + "---|" * (len(mixes) + 5),
    ]
    for variant in variants:
        run_long = runs.get((variant, "long"))
        tok = run_long.median_tokens() if run_long else 0.0
        gflops = tok * mflop / 1000
        ratio = " / ".join(
            f"{tps(variant, m) / tps(BASELINE, m):.2f}x" if tps(variant, m) and tps(BASELINE, m) else "-" for m in mixes
        )
        lines.append(
            f"| {variant} | "
            + " | ".join(_fmt(tps(variant, m), 1) for m in mixes)
            + f" | {_fmt(tok)} | {_fmt(gflops)} | {_fmt(100 * gflops / gemm['fp32'])} | "
            f"{_fmt(100 * gflops / gemm['bf16'])} | {ratio} |"
        )
    lines += [
        "",
        "## Latency of the default settings (open-loop paced producer, publish → score received)",
        "",
        "| load | rate (msg/s) | p50 (s) | p99 (s) |",
        "|---|---|---|---|",
    ]
    for fraction, (rate, p50, p99) in sorted(extra["latency"].items()):
        load = "1 client (one message at a time)" if fraction == 0 else f"{fraction:.0%} of capacity"
        lines.append(f"| {load} | {rate:.0f} | {p50:.3f} | {p99:.3f} |")
    if extra.get("one_text_s"):
        lines += ["", f"The model alone scores one median-length snippet in {_one_text(extra) * 1000:.1f} ms (median)."]
    if extra.get("http"):
        lines += [
            "",
            "## HTTP: closed-loop clients, one short text per request",
            "",
            "| server | clients | requests/s | p50 (s) | p99 (s) |",
            "|---|---|---|---|---|",
        ]
        for (server, clients), (rps, p50, p99) in sorted(extra["http"].items()):
            lines.append(f"| {server} | {clients} | {rps:.1f} | {p50:.3f} | {p99:.3f} |")
        lines += [
            "",
            "Load generators: `hey` (closed loop) and `vegeta` (open loop), compiled Go in their own processes; the "
            "same median-length snippet in every request.",
        ]
    if extra.get("http_paced"):
        lines += [
            "",
            "## HTTP: open loop (vegeta: requests leave at a fixed rate whatever the answers do)",
            "",
            "| server | load | rate (req/s) | achieved (req/s) | p50 (s) | p99 (s) |",
            "|---|---|---|---|---|---|",
        ]
        for (server, fraction), (rate, rps, p50, p99) in sorted(extra["http_paced"].items()):
            load = f"{fraction:.0%} of its 64-client rate"
            lines.append(f"| {server} | {load} | {rate:.1f} | {rps:.1f} | {p50:.3f} | {p99:.3f} |")
    lines += [
        "",
        "## Resources",
        "",
        "| worker variant | cold start to ready (s) | peak RSS per process (MiB) |",
        "|---|---|---|",
    ]
    for variant, starts in extra["cold_start_s"].items():
        rss = ", ".join(f"{x:.0f}" for x in extra["rss_mb"].get(variant, []))
        lines.append(f"| {variant} | {statistics.median(starts):.1f} | {rss} |")

    # --- targets ---------------------------------------------------------------------------------------------
    best_alone = {m: max((tps(v, m) for v in variants if v.startswith("model alone")), default=0.0) for m in mixes}
    max_batch = extra["max_batch_s"].get(DEFAULT, 0.0)
    p99_half = extra["latency"].get(0.5, (0, float("nan"), float("nan")))[2]
    bound = settings.max_wait_ms / 1000 + 2 * max_batch
    rss_max = max((x for xs in extra["rss_mb"].values() for x in xs), default=0.0)
    cold_max = max((statistics.median(s) for s in extra["cold_start_s"].values()), default=0.0)
    targets = [
        *[
            (
                f"end to end, default settings ≥ 0.9x best model-alone ({m})",
                f"{tps(DEFAULT, m) / best_alone[m]:.2f}x" if best_alone[m] else "-",
                bool(best_alone[m]) and tps(DEFAULT, m) >= 0.9 * best_alone[m],
            )
            for m in mixes
        ],
        *[
            (
                f"end to end, default settings ≥ 2.0x worker x1 fp32 ({m})",
                f"{tps(DEFAULT, m) / tps(BASELINE, m):.2f}x" if tps(BASELINE, m) else "-",
                bool(tps(BASELINE, m)) and tps(DEFAULT, m) >= 2.0 * tps(BASELINE, m),
            )
            for m in mixes
        ],
        (
            "≥ 5x the per-message scorer (short)",
            f"{tps(DEFAULT, 'short') / tps(PEER, 'short'):.1f}x" if tps(PEER, "short") else "-",
            bool(tps(PEER, "short")) and tps(DEFAULT, "short") >= 5 * tps(PEER, "short"),
        ),
        (f"p99 at 50% load ≤ max_wait + 2 x max batch = {bound:.3f} s", f"{p99_half:.3f} s", p99_half <= bound),
        *_http_targets(extra, tps(DEFAULT, "short")),
        *_latency_targets(extra, best_alone.get("short", 0.0), tps, mixes),
        *[
            (
                f"anonymization guard (flag) ≤ 5% of end-to-end time per text ({m})",
                f"{extra['pii_us'][m]:.1f} µs = {100 * extra['pii_us'][m] * 1e-6 * tps(DEFAULT, m):.2f}%",
                bool(tps(DEFAULT, m)) and extra["pii_us"][m] * 1e-6 * tps(DEFAULT, m) <= 0.05,
            )
            for m in mixes
            if "pii_us" in extra
        ],
        ("worker RSS ≤ 1.5 GiB per process", f"{rss_max:.0f} MiB", 0 < rss_max <= 1536),
        ("cold start to ready ≤ 10 s", f"{cold_max:.1f} s", 0 < cold_max <= 10),
    ]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets]
    plots = _plots(opts.output_dir, stem, variants, mixes, tps, extra)
    if plots:
        lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    path = opts.output_dir / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _http_targets(extra: dict[str, Any], kafka_short: float) -> list[tuple[str, str, bool]]:
    from stream_worker.bench.variants import NAIVE, SERVE

    http = extra.get("http", {})
    serve, naive = http.get((SERVE, 64)), http.get((NAIVE, 64))
    if not serve or not naive:
        return []
    return [
        ("scorer serve at 64 clients ≥ 3x the naive server", f"{serve[0] / naive[0]:.2f}x", serve[0] >= 3 * naive[0]),
        (
            "scorer serve at 64 clients ≥ 0.85x the Kafka worker (short)",
            f"{serve[0] / kafka_short:.2f}x" if kafka_short else "-",
            bool(kafka_short) and serve[0] >= 0.85 * kafka_short,
        ),
    ]


def _one_text(extra: dict[str, Any]) -> float:
    return min(extra["one_text_s"]) if extra.get("one_text_s") else 0.0


def _latency_targets(
    extra: dict[str, Any], best_alone_short: float, tps: Any, mixes: list[str]
) -> list[tuple[str, str, bool]]:
    """The low-latency issue's targets: HTTP against the naive server and the model alone, Kafka against the
    model's own one-text latency, saturation against the previous fixed-window default."""
    from stream_worker.bench.variants import DEFAULT, FIXED_WINDOW, NAIVE, REGISTRY, SERVE

    out: list[tuple[str, str, bool]] = []
    http = extra.get("http", {})
    s1, n1, s64, n64 = http.get((SERVE, 1)), http.get((NAIVE, 1)), http.get((SERVE, 64)), http.get((NAIVE, 64))
    if s1 and n1:
        out.append(("serve, 1 client: ≥ 0.9x naive requests/s", f"{s1[0] / n1[0]:.2f}x", s1[0] >= 0.9 * n1[0]))
        out.append(("serve, 1 client: p50 ≤ 1.2x naive p50", f"{s1[1] / n1[1]:.2f}x", s1[1] <= 1.2 * n1[1]))
    if s64 and n64:
        out.append(("serve, 64 clients: ≥ 1.5x naive requests/s", f"{s64[0] / n64[0]:.2f}x", s64[0] >= 1.5 * n64[0]))
        if best_alone_short:
            out.append(
                (
                    "serve, 64 clients: ≥ 0.85x best model-alone texts/s (short)",
                    f"{s64[0] / best_alone_short:.2f}x",
                    s64[0] >= 0.85 * best_alone_short,
                )
            )
    one = _one_text(extra)
    quarter, ninety = extra["latency"].get(0.25), extra["latency"].get(0.9)
    if one and quarter:
        where = extra.get("broker", "broker")
        p50, p99 = quarter[1], quarter[2]
        out.append((f"Kafka ({where}) at 25%: p50 ≤ 2x one-text model latency", f"{p50 / one:.1f}x", p50 <= 2 * one))
        out.append((f"Kafka ({where}) at 25%: p99 ≤ 5x one-text model latency", f"{p99 / one:.1f}x", p99 <= 5 * one))
    if ninety:
        out.append(("Kafka at 90%: p99 ≤ 1 s", f"{ninety[2]:.3f} s", ninety[2] <= 1.0))
    for m in mixes:
        framed = tps(REGISTRY, m)
        if framed and tps(DEFAULT, m):
            ratio = framed / tps(DEFAULT, m)
            out.append((f"Schema Registry ({m}): framed in and out ≥ 0.97x plain Avro", f"{ratio:.2f}x", ratio >= 0.97))
    for m in mixes:
        fixed = tps(FIXED_WINDOW, m)
        if fixed:
            ratio = tps(DEFAULT, m) / fixed
            out.append((f"saturation ({m}): default ≥ 0.97x the fixed 25 ms window", f"{ratio:.2f}x", ratio >= 0.97))
    return out


def _plots(out: Path, stem: str, variants: list[str], mixes: list[str], tps: Any, extra: dict[str, Any]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    fig, axes = plt.subplots(1, len(mixes), figsize=(6 * len(mixes), 0.45 * len(variants) + 1.5))
    for ax, mix in zip(axes if len(mixes) > 1 else [axes], mixes, strict=True):
        values = [tps(v, mix) for v in variants]
        ax.barh(range(len(variants)), values, color="#4878a8")
        ax.set_yticks(range(len(variants)), [v[:48] for v in variants], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{mix} texts/s")
    fig.tight_layout()
    paths.append(out / f"{stem}-throughput.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    if extra["latency"]:
        fig, ax = plt.subplots(figsize=(5, 3))
        loads = sorted(extra["latency"])
        ax.plot([100 * f for f in loads], [extra["latency"][f][1] for f in loads], "o-", label="p50")
        ax.plot([100 * f for f in loads], [extra["latency"][f][2] for f in loads], "s-", label="p99")
        ax.set_xlabel("load, % of measured capacity")
        ax.set_ylabel("seconds")
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{stem}-latency.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths
