#!/usr/bin/env bash
# The README's test command (`make test`) and what CI runs.
#   1. worker environment + lint (ruff, mypy on stream_worker/, import layering)
#   2. training environment + training tests (real TFX pipeline, ci profile, pushes a model to .cache/ci-run)
#   3. worker tests against real Apache Kafka and tansu: unit, integration (incl. the pushed real model), deploy
#      (the image built and run with a Docker engine, the compose stack, the Helm chart), and the fault subset last
#      (the 15 slowest are listed at the end)
#   4. `scorer bench --quick` on that model (the benchmark must run; it asserts no timings)
# Steps 2 and 3 run one after the other, each on two pytest processes (pytest-xdist, one test file per process at a
# time): a single test leaves a core idle about half the time (a worker's TensorFlow import is single-threaded),
# while the training and worker suites side by side were CPU-bound (27 + 17 min against 20 + 9 one after the other).
# SCORER_TEST_PROCESSES sets the count (0: no extra processes, the tests in file order).
# A skipped test fails the run (SCORER_TEST_NO_SKIP=1): an integration test that did not run proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export SCORER_TEST_NO_SKIP=1
status=0
procs=${SCORER_TEST_PROCESSES:-2}
bash scripts/setup_worker_env.sh || exit 1
echo "==> lint: ruff + mypy + import layering" >&2
.venv/bin/ruff check stream_worker tests bench examples --exclude tests/training || status=1
.venv/bin/mypy stream_worker || status=1
.venv/bin/lint-imports || status=1  # the import-layering contract of stream_worker (pyproject.toml)
echo "==> Docker engine and compose for the deploy tests" >&2
bash scripts/setup_docker.sh || status=1  # without them the deploy tests fail, saying why (never skipped)
bash scripts/setup_helm.sh || status=1    # helm (Go module proxy), KEDA's CRDs, promtool: the Helm chart's checks
if [[ -x scripts/test_training.sh ]]; then
  echo "==> training tests (Python 3.10, TFX 1.16)" >&2
  bash scripts/test_training.sh -n "$procs" --dist loadfile --no-loadscope-reorder || status=1
fi
echo "==> worker tests (Python 3.11, TF 2.21) against Apache Kafka and tansu; deploy tests with Docker" >&2
.venv/bin/python -m pytest tests/unit tests/integration tests/deploy tests/faults -v -rs -p no:cacheprovider \
  -n "$procs" --dist loadfile --no-loadscope-reorder --durations=15 "$@" || status=1
echo "==> scorer bench --quick (smoke run of the benchmark on the ci model; no timing assertions)" >&2
.venv/bin/scorer bench --quick --model-dir "${SCORER_CI_RUN_DIR:-.cache/ci-run}/serving_model" \
  --output-dir .cache/bench-quick || status=1
exit $status
