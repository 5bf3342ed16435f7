"""``scorer bench`` through Apache Kafka: starts the test suite's single KRaft node (jars from Maven Central, as the
tests fetch them) and its Schema Registry (Apicurio Registry, also from Maven Central), runs
``scorer bench --bootstrap-servers <node> --schema-registry-url <registry>`` with the arguments given, stops both.

    .venv/bin/python scripts/bench_on_kafka.py --model-dir models/sentiment [--quick] [--rounds N]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.brokers import KafkaBroker  # noqa: E402  (the repo root must be importable first)
from tests.registry import ApicurioRegistry  # noqa: E402


def main() -> int:
    scorer = str(Path(sys.executable).parent / "scorer")
    with KafkaBroker(heap="512m") as broker, ApicurioRegistry() as registry:
        print(f"Apache Kafka at {broker.bootstrap_servers}, registry at {registry.url}", file=sys.stderr, flush=True)
        command = [scorer, "bench", "--bootstrap-servers", broker.bootstrap_servers,
                   "--schema-registry-url", registry.url, *sys.argv[1:]]  # fmt: skip
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
