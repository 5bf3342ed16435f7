"""Fixtures for the training-pipeline tests (run in .venv-train by scripts/test_training.sh).

The worker's tests/conftest.py is not loaded here (scripts/test_training.sh passes --confcutdir=tests/training).
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(pathlib.Path(__file__).parent))


def ci_run_dir() -> pathlib.Path:
    """Well-known location of the ci pipeline's pushed model + reference scores (read by the worker-env test)."""
    return pathlib.Path(os.environ.get("SCORER_CI_RUN_DIR", REPO / ".cache" / "ci-run")).resolve()


@pytest.fixture(scope="session")
def ci_encoder(tmp_path_factory) -> str:
    """The MiniLM encoder with the ci profile's number of layers, exported once per session."""
    from training import encoder_export, profiles

    n = profiles.get_profile("ci").num_layers
    return encoder_export.export_encoder(tmp_path_factory.mktemp("encoder") / f"minilm-L{n}", n)
