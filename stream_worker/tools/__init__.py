"""Operations tooling around the data path: the worker supervisor (pool.py), the embedded tansu broker, the
produce/tail clients, the demo and the bridge to the training environment.
May import: stream_worker.serve, stream_worker.pipeline, stream_worker.engine, stream_worker.common."""
