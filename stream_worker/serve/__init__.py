"""The HTTP door (``scorer serve``): the service over the shared engine (service.py), the TF Serving REST and Open
Inference Protocol routes, and the app that assembles them (app.py).
May import: stream_worker.pipeline (decode, guard, pii checks), stream_worker.engine, stream_worker.common."""
