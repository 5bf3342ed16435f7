# Two commands for a newcomer:  `make demo` (the streaming demo) and `make test` (all tests).
# Both install what they need (Python envs under .venv / .venv-train, Kafka jars under .cache/).
.PHONY: demo test test-all setup lint broker clean faults

demo: setup
	.venv/bin/scorer demo

test:
	bash scripts/test_all.sh

# The full matrix: make test plus the [tansu] case of broker-agnostic tests and all 14 fault scenarios (~1 h).
test-all:
	TEST_FULL_MATRIX=1 FAULTS_FULL=1 bash scripts/test_all.sh

# Full fault-injection suite on a 3-node Kafka cluster (both delivery modes, ~30 min on 2 cores); writes
# reports/reliability.md.  `make test` runs only its time-boxed subset.
faults: setup
	rm -f .cache/faults/make-faults.jsonl
	start=$$(date +%s); FAULTS_FULL=1 SCORER_TEST_NO_SKIP=1 FAULTS_RESULTS=.cache/faults/make-faults.jsonl \
	  .venv/bin/python -m pytest tests/faults -m faults -v -rs -p no:cacheprovider; status=$$?; \
	.venv/bin/python -m tests.faults.report --results .cache/faults/make-faults.jsonl --command "make faults" \
	  --duration-s $$(( $$(date +%s) - start )); \
	exit $$status

setup:
	bash scripts/setup_worker_env.sh

lint: setup
	.venv/bin/ruff check stream_worker tests bench examples --exclude tests/training
	.venv/bin/mypy stream_worker
	.venv/bin/lint-imports

broker: setup
	.venv/bin/scorer broker --port 9092

clean:
	rm -rf .venv .venv-train .cache runs models
