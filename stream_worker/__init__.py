"""Kafka streaming sentiment scorer: consume → decode → guard → batch → score → encode → produce → commit."""

__version__ = "0.1.0"
