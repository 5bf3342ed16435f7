"""Foundations every package uses: the frozen settings, the one exception tree, JSON logs, metrics and probes,
and the routing of Kafka clients' own log lines and connection health.
May import: nothing of stream_worker outside this package."""
