"""The stages of the Kafka data path, one module each (consume, decode, guard, pii, encode, produce, commit or
transaction, dead-letter), and the worker loop that calls them in that order (worker.py).
May import: stream_worker.engine, stream_worker.common."""
