"""The engine shared by both doors (Kafka worker, HTTP server): length-sorting batcher, the inference thread that
owns the model (inference.py), the SavedModel scorer, and the model repository with its background rollout.
May import: stream_worker.common."""
