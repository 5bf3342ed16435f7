"""TensorFlow as the scorer needs it: the runtime and the text ops a SavedModel's tokenizer calls, nothing more.

Start-up cost, measured on a 2-core AMD EPYC (AVX2): ``import tensorflow`` takes ~14 s of CPU, and
``import tensorflow_text`` ~4 s more.  About 3-5 s of that is Keras: TensorFlow eagerly imports
``keras.src.optimizers`` (so that Keras optimizers can register with SavedModel), and tensorflow-text imports its
Keras layers.  The scorer only loads SavedModel signatures and never touches Keras, so:

1. ``tensorflow()`` imports TensorFlow with that one eager Keras import refused (TensorFlow catches the
   ``ImportError`` and goes on; ``tf.keras`` stays a lazy attribute that still works if anything asks for it).
2. ``load_text_ops()`` registers tensorflow-text's kernels by loading its op libraries, without importing the
   package's Python layers.  If the wheel's layout ever differs, it falls back to ``import tensorflow_text``.

Every worker start, pool restart and ``scorer serve`` start pays this, so it is worth the few lines: a restarted
worker is back sooner.  The first call in a process decides; later calls return the loaded module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_KERAS_EAGER = "keras.src.optimizers"
_text_ops_loaded = False


def tensorflow() -> Any:
    """The ``tensorflow`` module, imported without Keras's eager optimizer import if it is not imported yet."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    refused = _KERAS_EAGER not in sys.modules
    if refused:
        sys.modules[_KERAS_EAGER] = None  # type: ignore[assignment]  # import of this name raises ImportError
    try:
        import tensorflow as tf
    finally:
        if refused and sys.modules.get(_KERAS_EAGER, 0) is None:
            del sys.modules[_KERAS_EAGER]  # a later, real ``import keras`` works as usual
    return tf


def load_text_ops() -> None:
    """Register tensorflow-text's ops (the tokenizers inside the SavedModel) with the TensorFlow runtime."""
    global _text_ops_loaded
    if _text_ops_loaded or "tensorflow_text" in sys.modules:
        _text_ops_loaded = True
        return
    tf = tensorflow()
    libraries = _op_libraries()
    if libraries:
        for library in libraries:
            tf.load_op_library(str(library))
    else:  # not the wheel layout this was written for: the package's own import registers them
        import tensorflow_text  # noqa: F401
    _text_ops_loaded = True


def _op_libraries() -> list[Path]:
    spec = importlib.util.find_spec("tensorflow_text")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return []
    ops = Path(next(iter(spec.submodule_search_locations))) / "python" / "ops"
    return sorted(ops.glob("_*.so"))
