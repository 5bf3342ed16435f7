"""Run the TFX training pipeline from the worker's CLI.

Training lives in its own Python 3.10 environment (tfx 1.16 cannot install next to TF 2.21 on Debian 12), so
``scorer train`` prepares that environment (``scripts/setup_training_env.sh``) and runs ``training.cli`` in it,
streaming its progress.  The pushed SavedModel directory is the only thing the two environments share.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream_worker.common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"
SETUP_SCRIPT = REPO / "scripts" / "setup_training_env.sh"


def training_available() -> bool:
    return (REPO / "training" / "cli.py").is_file() and SETUP_SCRIPT.is_file()


def run_training(profile: str, data: str, model_base: Path, work_dir: Path, overrides: list[str] | None = None) -> int:
    """Set up the training environment if needed, run the pipeline, return its exit code."""
    if not training_available():
        raise ConfigError("the training pipeline is not in this checkout (training/, scripts/setup_training_env.sh)")
    setup = subprocess.run(["bash", str(SETUP_SCRIPT)], cwd=REPO, check=False)
    if setup.returncode != 0:
        return setup.returncode
    # google-api-core warns about Python 3.10 support once per import (~34 FutureWarning lines) and buries the
    # pipeline's progress; they concern the training environment's pinned Python, not the user.
    env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"}
    command = training_command(profile, data, model_base, work_dir, overrides)
    return subprocess.run(command, cwd=REPO, env=env, stdout=sys.stdout, stderr=sys.stderr, check=False).returncode


def training_command(
    profile: str, data: str, model_base: Path, work_dir: Path, overrides: list[str] | None = None
) -> list[str]:
    """The command ``scorer train`` runs in the training environment (``overrides``: its ``--set`` items)."""
    return [
        str(TRAIN_PYTHON),
        "-m",
        "training.cli",
        "train",
        "--profile",
        profile,
        "--data",
        data,
        "--model-base",
        str(model_base.resolve()),
        "--work-dir",
        str(work_dir.resolve()),
        *(arg for item in overrides or [] for arg in ("--set", item)),
    ]
