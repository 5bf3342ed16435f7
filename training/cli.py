"""Command line of the training pipeline (run with the training environment's Python)::

    .venv-train/bin/python -m training.cli train --profile demo --data rotten_tomatoes \\
        --model-base models/sentiment --work-dir runs/demo

Steps: prepare the data splits -> export the MiniLM encoder as a TF-Hub SavedModel (cached) -> run the TFX
pipeline with LocalDagRunner (progress per component and per epoch) -> write the run report.  The last line
printed is the pushed model directory ``<model-base>/<version>``.

Exit codes: 0 pushed; 2 data validation failed; 3 model not blessed (nothing pushed); 1 other errors.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import logging
import pathlib
import re
import sys
import time

log = logging.getLogger("training.cli")

_COMPONENT_RE = re.compile(r"^Component (\S+) is (running|finished)")


class _ProgressHandler(logging.Handler):
    """Shows component start/finish lines from TFX, our own INFO logs and errors; hides the rest."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.started: dict[str, float] = {}
        self.t0 = time.time()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            return
        m = _COMPONENT_RE.match(msg)
        elapsed = f"{time.time() - self.t0:6.0f}s"
        if m:
            name, what = m.group(1), m.group(2)
            if what == "running":
                self.started[name] = time.time()
                print(f"[{elapsed}] >> {name} ...", flush=True)
            else:
                took = time.time() - self.started.get(name, time.time())
                print(f"[{elapsed}] ok {name} ({took:.0f}s)", flush=True)
        elif record.name.startswith("training") or record.levelno >= logging.ERROR:
            print(f"[{elapsed}] {record.levelname.lower()}: {msg}", flush=True)


def _setup_logging() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_ProgressHandler())
    root.setLevel(logging.INFO)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.INFO)
        logging.getLogger("absl").propagate = True
    except ImportError:
        pass


def _versions(base: pathlib.Path) -> list[int]:
    if not base.exists():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def _find_error(exc: BaseException, cls_name: str) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == cls_name or cls_name in str(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def cmd_train(args: argparse.Namespace) -> int:
    _setup_logging()
    from training import profiles

    try:  # before the TFX imports below, so that a mistyped --set fails at once
        prof = profiles.with_overrides(profiles.get_profile(args.profile), args.set)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from training import data as data_lib
    from training import encoder_export
    from training import pipeline as pipeline_lib
    from training.runners import local_runner
    work = pathlib.Path(args.work_dir).resolve()
    model_base = pathlib.Path(args.model_base).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    print(f"== training profile '{prof.name}' on data '{args.data}' (work dir {work})", flush=True)

    if args.encoder:
        encoder_path = args.encoder
        print(f"== using encoder {encoder_path}", flush=True)
    else:
        n = prof.num_layers or 6
        print(f"== exporting MiniLM encoder ({n} layers) as TF-Hub SavedModel", flush=True)
        encoder_path = encoder_export.export_encoder(work / "encoders" / f"minilm-l6-v2-L{n}", prof.num_layers)
    vocab = encoder_export.vocab_path(encoder_path)

    print("== preparing data splits", flush=True)
    data_root = data_lib.prepare(args.data, work / "data", seed=prof.seed, max_examples=prof.max_examples,
                                 tfds_data_dir=args.tfds_data_dir, docs=prof.pseudo_docs(),
                                 windowing=prof.windowing(vocab), split_by_group=prof.split_by_group)
    info = json.loads((pathlib.Path(data_root) / "splits.json").read_text())
    print(f"   {data_root}: {info['counts']} (pseudo-documents {info['pseudo_documents']})", flush=True)

    beam_args = list(pipeline_lib.DEFAULT_BEAM_ARGS) if not args.beam_arg else list(args.beam_arg)
    pipe = pipeline_lib.create_pipeline(
        pipeline_name=f"sentiment-scorer-{prof.name}",
        pipeline_root=str(work / "pipeline_root"),
        data_root=data_root,
        encoder_path=encoder_path,
        vocab_file=vocab,
        serving_model_dir=str(model_base),
        metadata_path=str(work / "metadata.sqlite"),
        beam_pipeline_args=beam_args,
        **prof.pipeline_kwargs(),
    )
    before = set(_versions(model_base))
    print(f"== running TFX pipeline ({len(pipe.components)} components, beam args {beam_args})", flush=True)
    t_pipe = time.time()
    try:
        local_runner.run(pipe)
    except Exception as exc:
        dv = _find_error(exc, "DataValidationError")
        if dv is not None:
            text = str(dv)
            text = text[text.find("Data validation failed"):] if "Data validation failed" in text else text
            print(f"\nERROR: the run stopped at data validation.\n{text}", file=sys.stderr, flush=True)
            return 2
        raise
    pipeline_seconds = time.time() - t_pipe
    pipeline_root = work / "pipeline_root"
    from training.report import latest_artifact_dir

    blessing_dir = latest_artifact_dir(pipeline_root, "Evaluator", "blessing")
    blessed = blessing_dir is not None and (blessing_dir / "BLESSED").exists()
    new = sorted(set(_versions(model_base)) - before)
    print(f"== pipeline finished in {pipeline_seconds:.0f}s; model {'BLESSED' if blessed else 'NOT blessed'}",
          flush=True)
    pushed = model_base / str(new[-1]) if new else None
    run_info = {"profile": prof.name, "overrides": args.set or [], "data": args.data, "data_root": str(data_root),
                "pushed_dir": str(pushed) if pushed else None, "blessed": blessed,
                "pipeline_seconds": pipeline_seconds, "total_seconds": time.time() - t_start,
                "command": " ".join([".venv-train/bin/python -m training.cli", *sys.argv[1:]])}
    (work / RUN_INFO).write_text(json.dumps(run_info, indent=2))
    if not args.no_report:
        _write_report(work, run_info, args.report_dir)
    if pushed is None:
        print("ERROR: the model was not blessed by the Evaluator; nothing was pushed.", file=sys.stderr)
        return 3
    print(f"== done in {time.time() - t_start:.0f}s; pushed model:", flush=True)
    print(pushed, flush=True)
    return 0


RUN_INFO = "run_info.json"


def _write_report(work: pathlib.Path, run_info: dict, report_dir: str | None) -> pathlib.Path:
    from training import profiles, report

    print("== writing report", flush=True)
    pushed = run_info.get("pushed_dir")
    path = report.write_report(
        work_dir=work, pipeline_root=work / "pipeline_root", data_root=pathlib.Path(run_info["data_root"]),
        profile=profiles.with_overrides(profiles.get_profile(run_info["profile"]), run_info.get("overrides")),
        data_spec=run_info["data"],
        pushed_dir=pathlib.Path(pushed) if pushed else None, blessed=bool(run_info["blessed"]),
        pipeline_seconds=float(run_info["pipeline_seconds"]), total_seconds=float(run_info["total_seconds"]),
        command=run_info["command"], out_dir=pathlib.Path(report_dir) if report_dir else None)
    print(f"   report: {path}", flush=True)
    return path


def cmd_report(args: argparse.Namespace) -> int:
    """(Re)write the report of a finished ``train`` run from its work dir (run_info.json)."""
    work = pathlib.Path(args.work_dir).resolve()
    _write_report(work, json.loads((work / RUN_INFO).read_text()), args.report_dir)
    return 0


def cmd_export_encoder(args: argparse.Namespace) -> int:
    from training import encoder_export

    print(encoder_export.export_encoder(args.output_dir, args.num_layers, overwrite=args.overwrite))
    return 0


def cmd_compile_kfp(args: argparse.Namespace) -> int:
    from training.runners import kubeflow_v2_runner

    kubeflow_v2_runner.compile_from_args(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    from training import profiles
    from training.runners import kubeflow_v2_runner  # light: imports tfx only when compiling

    ap = argparse.ArgumentParser(prog="python -m training.cli", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run the TFX pipeline and push a model")
    t.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES))
    t.add_argument("--data", default="rotten_tomatoes",
                   help="rotten_tomatoes | csv:PATH | jsonl:PATH | tfds[:NAME] (default: rotten_tomatoes)")
    t.add_argument("--model-base", required=True, help="model repository; the model is pushed to BASE/<version>")
    t.add_argument("--work-dir", required=True, help="pipeline root, ML Metadata (SQLite), caches, reports")
    t.add_argument("--encoder", default=None,
                   help="existing TF-Hub BERT encoder dir (with assets/vocab.txt); default: export MiniLM")
    t.add_argument("--tfds-data-dir", default=None)
    t.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                   help="override a profile field for this run (repeatable), e.g. --set train_docs=0")
    t.add_argument("--beam-arg", action="append", default=None,
                   help="Beam pipeline arg (repeatable), e.g. --beam-arg=--runner=FlinkRunner; "
                        "default: in-memory DirectRunner with 1 worker")
    t.add_argument("--report-dir", default=None, help="where to write the report (default WORK/reports/VERSION)")
    t.add_argument("--no-report", action="store_true")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("report", help="(re)write the report of a finished train run")
    r.add_argument("--work-dir", required=True)
    r.add_argument("--report-dir", default=None, help="default WORK/reports/VERSION")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("export-encoder", help="export the MiniLM weights as a TF-Hub SavedModel")
    e.add_argument("output_dir")
    e.add_argument("--num-layers", type=int, default=None)
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=cmd_export_encoder)

    k = sub.add_parser("compile-kfp", help="compile the pipeline to a Kubeflow Pipelines v2 / Vertex JSON spec")
    kubeflow_v2_runner.add_compile_args(k)
    k.set_defaults(func=cmd_compile_kfp)

    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
