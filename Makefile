# Two commands for a newcomer:  `make demo` (the streaming demo) and `make test` (all tests).
# Both install what they need (Python envs under .venv / .venv-train, Kafka jars under .cache/).
.PHONY: demo test setup lint broker clean

demo: setup
	.venv/bin/scorer demo

test:
	bash scripts/test_all.sh

setup:
	bash scripts/setup_worker_env.sh

lint: setup
	.venv/bin/ruff check stream_worker tests bench examples --exclude tests/training
	.venv/bin/mypy stream_worker

broker: setup
	.venv/bin/scorer broker --port 9092

clean:
	rm -rf .venv .venv-train .cache runs models
