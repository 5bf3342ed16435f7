"""TensorFlow imported the scorer's way (engine/tf_runtime.py): no Keras, tensorflow-text's ops without its Python
layers, and a SavedModel whose tokenizer uses those ops still loads and scores as before.

Runs in a fresh interpreter: in the pytest process TensorFlow is already imported (the toy model is built here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from pathlib import Path
from stream_worker.engine.score import Scorer
scorer = Scorer.load(Path(sys.argv[1]))
scores = [float(s) for s in scorer(["a great film", "an awful waste"])]
loaded = sorted(m for m in sys.modules if m == "keras" or m.startswith(("keras.", "tensorflow_text")))
import keras.src.optimizers  # a later real import of the refused module still works
print(json.dumps({"scores": scores, "loaded": loaded}))
"""


def test_scorer_loads_without_keras_and_without_the_text_package(toy_model_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(toy_model_dir)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"the scorer imported {result['loaded'][:5]}"
    good, bad = result["scores"]
    assert good > 0.5 > bad
