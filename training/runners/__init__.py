"""Runners that execute (local) or compile (Kubeflow Pipelines v2 / Vertex) the same pipeline."""
