"""TFX training pipeline for the Kafka streaming sentiment scorer (runs in .venv-train, Python 3.10)."""
