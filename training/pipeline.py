"""The TFX pipeline definition (a pure function; runners decide where it runs).

ImportExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema) -> ExampleValidator -> DataValidationGate
-> Transform -> Trainer -> Evaluator (TFMA, baseline = latest blessed model via a Resolver) -> Pusher.

ExampleValidator only records anomalies; ``DataValidationGate`` turns any anomaly into a failed run with a
message naming the split, the feature and the problem (``DataValidationError``), before Transform runs.
"""

# No "from __future__ import annotations": TFX parses the @component type hints at runtime.

import os
import pathlib

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import ExampleAnomalies

from training import features

SCHEMA_DIR = str(pathlib.Path(__file__).parent / "schema")
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


class DataValidationError(RuntimeError):
    """The input data violates the curated schema."""


def describe_anomalies(anomalies_uri: str) -> list[str]:
    """Human-readable lines 'split <s>: feature '<f>': <problem>' for every anomaly under an artifact uri."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    problems = []
    for split_dir in sorted(os.listdir(anomalies_uri)):
        path = os.path.join(anomalies_uri, split_dir, "SchemaDiff.pb")
        if not os.path.exists(path):
            continue
        split = split_dir.removeprefix("Split-")
        with open(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        for name, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason) or (
                info.short_description or info.description)
            problems.append(f"split {split}: feature '{name}': {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
            problems.append(f"split {split}: dataset: {reasons}")
    return problems


@component
def DataValidationGate(anomalies: InputArtifact[ExampleAnomalies], fail_on_anomalies: Parameter[bool] = True):
    """Stop the pipeline when ExampleValidator found anomalies (clear message naming the feature)."""
    problems = describe_anomalies(anomalies.uri)
    if problems:
        msg = "Data validation failed against training/schema/schema.pbtxt:\n  " + "\n  ".join(problems)
        if fail_on_anomalies:
            raise DataValidationError(msg)
        print("WARNING: " + msg)


def eval_config(accuracy_lower_bound: float, regression_delta: float):
    import tensorflow_model_analysis as tfma

    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={"value": -regression_delta}),
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_examples", label_key=features.LABEL_KEY,
                                    prediction_key="score", preprocessing_function_names=[])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LENGTH_BUCKET_KEY]),
                       tfma.SlicingSpec(feature_keys=[features.WINDOWS_BUCKET_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # Blessing looks at the overall eval split only; the length-bucket slices are reported, not gated
            # (a plain `threshold` would apply to every slice, and small slices are noisy).
            tfma.MetricConfig(class_name="BinaryAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="AUC"),
            tfma.MetricConfig(class_name="Calibration"),
            tfma.MetricConfig(class_name="MeanLabel"),
            tfma.MetricConfig(class_name="MeanPrediction"),
            tfma.MetricConfig(class_name="CalibrationPlot"),
            tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        ])],
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    encoder_path: str,
    vocab_file: str,
    serving_model_dir: str,
    train_steps: int,
    eval_steps: int,
    max_seq_length: int = 64,
    window_stride: int = 48,
    max_windows: int = 16,
    pooling: str = "auto",
    sweep_max_windows: tuple[int, ...] = (),
    sweep_windows: tuple[tuple[int, int, int], ...] = (),
    batch_size: int = 32,
    bucket_pool: int = 0,
    lexical_head: bool = False,
    epochs: int = 1,
    learning_rate: float = 5e-5,
    warmup_fraction: float = 0.1,
    weight_decay: float = 0.01,
    early_stopping_patience: int = 1,
    seed: int = 42,
    accuracy_lower_bound: float = 0.7,
    regression_delta: float = 0.02,
    schema_dir: str = SCHEMA_DIR,
    metadata_path: str | None = None,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = False,
) -> tfx.dsl.Pipeline:
    """Build the pipeline.  ``data_root`` holds ``train/``, ``eval/`` and ``test/`` tf.Example TFRecords
    (see training.data); the test split is ingested for statistics/validation only.

    ``window_stride`` / ``max_windows`` / ``pooling`` ("auto" = chosen on the eval split) are the exported
    scorer's long-document settings (training/model.py); ``sweep_max_windows`` exports extra variants with other
    window caps (``sweep_windows``: other (max_seq_length, stride, max_windows)) into the Trainer's model_run folder
    for the report.  ``bucket_pool`` > 1 trains on batches of similar length (pools of that many batches sorted by
    length, training.model.length_bucketed); 0 keeps batches in shuffled order.  ``lexical_head`` fits the TF-IDF
    head of training/lexical.py and lets calibration weigh it in (weight 0 = not exported)."""
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=s, pattern=f"{s}/*") for s in ("train", "eval", "test")]),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=os.path.join(schema_dir, "schema.pbtxt"))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"])

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="training.preprocessing.preprocessing_fn",
        custom_config={"vocab_file": vocab_file, "max_seq_length": max_seq_length},
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )
    transform.add_upstream_node(gate)

    trainer = tfx.components.Trainer(
        run_fn="training.model.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=eval_steps),
        custom_config={
            "encoder_path": encoder_path, "vocab_file": vocab_file, "max_seq_length": max_seq_length,
            "window_stride": window_stride, "max_windows": max_windows, "pooling": pooling,
            "sweep_max_windows": list(sweep_max_windows), "sweep_windows": [list(w) for w in sweep_windows],
            "batch_size": batch_size, "bucket_pool": bucket_pool, "lexical_head": lexical_head, "epochs": epochs,
            "learning_rate": learning_rate,
            "warmup_fraction": warmup_fraction, "weight_decay": weight_decay,
            "early_stopping_patience": early_stopping_patience, "seed": seed,
        },
    )

    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        schema=schema_gen.outputs["schema"],
        eval_config=eval_config(accuracy_lower_bound, regression_delta),
        example_splits=["eval"],
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
    )

    if metadata_connection_config is None and metadata_path is not None:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, gate, transform, trainer,
                    model_resolver, evaluator, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args if beam_pipeline_args is not None else DEFAULT_BEAM_ARGS),
    )
