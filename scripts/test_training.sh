#!/usr/bin/env bash
# Run the training-pipeline tests in the Python 3.10 training environment (.venv-train).
#
# Creates the environment first if needed (scripts/setup_training_env.sh, a no-op when up to date), then runs
# tests/training only.  --confcutdir keeps the worker's tests/conftest.py (Python 3.11 env) out of this run.
# The ci-profile test pushes to $SCORER_CI_RUN_DIR (default <repo>/.cache/ci-run)/serving_model/<version> and
# writes reference_scores.json there, which tests/integration/test_pushed_model_crossenv.py then checks in the
# worker environment.  Extra arguments are passed to pytest (e.g. -k encoder).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
"$REPO/scripts/setup_training_env.sh"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "${TRAIN_VENV:-$REPO/.venv-train}/bin/python" -m pytest tests/training -v -p no:cacheprovider \
  --rootdir="$REPO" --confcutdir="$REPO/tests/training" -W ignore::DeprecationWarning --durations=10 "$@"
