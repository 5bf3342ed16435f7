"""Compile the same ``create_pipeline`` into a Kubeflow Pipelines v2 / Vertex AI Pipelines job spec (JSON).

Compilation is offline (no cluster, no network).  Submit the JSON with the KFP v2 client or
``google.cloud.aiplatform.PipelineJob(template_path=...)``.  The image must contain this repository and the
training environment (e.g. built from the tfx 1.16 base image + ``pip install -r training/requirements.lock``);
``pipeline_root``, data, encoder and model locations must then be on storage the cluster can read (gs://...).
Beam-based components can use ``--runner=DataflowRunner`` (or Flink/Spark) through ``beam_pipeline_args``.
"""

from __future__ import annotations

import argparse
import json
import os

from training import profiles

DEFAULT_IMAGE = "gcr.io/YOUR-PROJECT/sentiment-scorer-training:latest"


def compile_pipeline(output_file: str, pipeline_root: str, data_root: str, encoder_path: str,
                     serving_model_dir: str, profile: str = "default", image: str = DEFAULT_IMAGE,
                     beam_pipeline_args: list[str] | None = None) -> dict:
    from tfx import v1 as tfx

    from training import pipeline as pipeline_lib

    p = profiles.get_profile(profile)
    pipe = pipeline_lib.create_pipeline(
        pipeline_name=f"sentiment-scorer-{p.name}",
        pipeline_root=pipeline_root,
        data_root=data_root,
        encoder_path=encoder_path,
        vocab_file=os.path.join(encoder_path, "assets", "vocab.txt"),
        serving_model_dir=serving_model_dir,
        **p.pipeline_kwargs(),
        beam_pipeline_args=beam_pipeline_args or ["--runner=DataflowRunner"],
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    runner.run(pipe, write_out=True)
    with open(output_file) as f:
        return json.load(f)


def add_compile_args(ap: argparse.ArgumentParser) -> None:
    """The compile options, shared by this module's ``main`` and ``python -m training.cli compile-kfp``."""
    ap.add_argument("--output", default="sentiment_scorer_pipeline.json")
    ap.add_argument("--pipeline-root", default="gs://YOUR-BUCKET/pipeline_root")
    ap.add_argument("--data-root", default="gs://YOUR-BUCKET/data/rotten_tomatoes")
    ap.add_argument("--encoder", default="gs://YOUR-BUCKET/encoders/minilm-l6")
    ap.add_argument("--model-base", default="gs://YOUR-BUCKET/serving_model")
    ap.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES))
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--beam-arg", action="append", default=None)


def compile_from_args(a: argparse.Namespace) -> None:
    compile_pipeline(a.output, a.pipeline_root, a.data_root, a.encoder, a.model_base, a.profile, a.image,
                     a.beam_arg)
    print(a.output)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Compile the training pipeline to a KFP v2 / Vertex JSON spec.")
    add_compile_args(ap)
    compile_from_args(ap.parse_args(argv))


if __name__ == "__main__":
    main()
