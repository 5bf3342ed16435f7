#!/usr/bin/env bash
# The README's test command (`make test`) and what CI runs.
#   1. worker environment + lint (ruff, mypy on stream_worker/, import layering)
#   2. at the same time, because one is CPU-bound and the other mostly waits on brokers:
#      a. training environment + training tests (real TFX pipeline, ci profile, pushes a model to .cache/ci-run),
#         in the background, their output kept in .cache/test-logs/training.log and printed when they end;
#      b. the worker tests that need no trained model, unit tests first and the fault subset last (its 3-node
#         cluster is the most load-sensitive scenario; by then the training tests are done);
#   3. the worker tests that check the pushed real model (they need 2a's model);
#   4. `scorer bench --quick` on that model (the benchmark must run; it asserts no timings).
# The 15 slowest tests of each worker run are listed: CI should stay under 30 min.
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

MODEL_TESTS=(tests/integration/test_real_model.py tests/integration/test_pushed_model_crossenv.py)
PYTEST=(.venv/bin/python -m pytest -v -rs -p no:cacheprovider --durations=15)
mkdir -p .cache/test-logs
train_log=.cache/test-logs/training.log
echo "==> training tests (Python 3.10, TFX 1.16) in the background; output: $train_log" >&2
bash scripts/test_training.sh >"$train_log" 2>&1 &
train_pid=$!
trap 'kill "$train_pid" 2>/dev/null' EXIT

echo "==> worker tests (Python 3.11, TF 2.21) against Apache Kafka and tansu, beside the training tests" >&2
"${PYTEST[@]}" tests/unit tests/integration tests/faults "${MODEL_TESTS[@]/#/--deselect=}" "$@" || status=1

echo "==> waiting for the training tests" >&2
wait "$train_pid" || status=1
trap - EXIT
echo "==> training tests' output ($train_log)" >&2
cat "$train_log"

echo "==> worker tests of the pushed real model" >&2
"${PYTEST[@]}" "${MODEL_TESTS[@]}" "$@" || status=1
echo "==> scorer bench --quick (smoke run of the benchmark on the ci model; no timing assertions)" >&2
.venv/bin/scorer bench --quick --model-dir "${SCORER_CI_RUN_DIR:-.cache/ci-run}/serving_model" \
  --output-dir .cache/bench-quick || status=1
exit $status
