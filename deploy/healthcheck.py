"""The image's HEALTHCHECK: healthy when the scorer in this container answers ``/readyz`` with 200.

One image runs both doors, so it asks the worker's probe port (``SCORER_METRICS_PORT``, default 9464) and the HTTP
door's port (``SCORER_PORT``, default 8501) on loopback; whichever the command listens on answers.  Standard library
only: it starts in ~30 ms, where the ``scorer`` console script would import its whole CLI every interval.
"""

import os
import sys
import urllib.request


def ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status such as 503 (not ready yet)
        return False


ports = {os.environ.get("SCORER_METRICS_PORT", "9464"), os.environ.get("SCORER_PORT", "8501")}
sys.exit(0 if any(ready(port) for port in sorted(ports)) else 1)
