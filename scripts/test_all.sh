#!/usr/bin/env bash
# The README's test command (`make test`) and what CI runs.
#   1. worker environment + lint (ruff, mypy on stream_worker/)
#   2. training environment + training tests (real TFX pipeline, ci profile, pushes a model to .cache/ci-run)
#   3. worker unit + integration tests against real Apache Kafka and tansu, incl. the pushed real model (the 15
#      slowest listed at the end: CI should stay under 30 min)
#   4. `scorer bench --quick` on that model (the benchmark must run; it asserts no timings)
# A skipped test fails the run (SCORER_TEST_NO_SKIP=1): an integration test that did not run proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export SCORER_TEST_NO_SKIP=1
status=0
bash scripts/setup_worker_env.sh || exit 1
echo "==> lint: ruff + mypy + import layering" >&2
.venv/bin/ruff check stream_worker tests bench examples --exclude tests/training || status=1
.venv/bin/mypy stream_worker || status=1
.venv/bin/lint-imports || status=1  # the import-layering contract of stream_worker (pyproject.toml)
if [[ -x scripts/test_training.sh ]]; then
  echo "==> training tests (Python 3.10, TFX 1.16)" >&2
  bash scripts/test_training.sh || status=1
fi
echo "==> worker tests (Python 3.11, TF 2.21) against Apache Kafka and tansu" >&2
.venv/bin/python -m pytest tests --ignore=tests/training -v -rs -p no:cacheprovider --durations=15 "$@" || status=1
echo "==> scorer bench --quick (smoke run of the benchmark on the ci model; no timing assertions)" >&2
.venv/bin/scorer bench --quick --model-dir "${SCORER_CI_RUN_DIR:-.cache/ci-run}/serving_model" \
  --output-dir .cache/bench-quick || status=1
exit $status
