# The scorer image: the `scorer` console script on Python 3.11 with TensorFlow 2.21 (CPU).  One image, both doors:
#   worker (default command): consume, score, publish; probes and metrics on :9464
#   serve:                    TF Serving REST (/v1) and Open Inference Protocol v2 (/v2) on :8501
# Models are mounted at /models/sentiment/<version>/, never baked in.  Build from the repository root:
#   docker build -f deploy/scorer.Dockerfile -t sentiment-scorer .
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and venv (the default is the public slim one; the deploy
# tests pass a locally made one, scripts/make_base_image.sh, where no registry can be reached).
# Works with BuildKit and with the classic builder (no RUN --mount): dependency layers are cached by the layer cache.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# 1. The dependency list, read from pyproject.toml's `worker` extra.  A stage of its own: the install below is keyed
#    on this file's content (COPY --from compares checksums), so editing anything else in pyproject.toml (a test
#    tool, a lint rule) does not reinstall ~1 GB of wheels.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['optional-dependencies']['worker']))" > /src/requirements.txt

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/scorer
# 2. The dependencies alone: rebuilt only when the list changes, not on a code change.  tensorflow-text with
#    --no-deps: its metadata asks for the full `tensorflow` wheel; it runs on tensorflow-cpu.
COPY --from=requirements /src/requirements.txt /src/requirements.txt
RUN /opt/scorer/bin/pip install -q -r /src/requirements.txt \
 && /opt/scorer/bin/pip install -q --no-deps tensorflow-text==2.21.1
# 3. The scorer itself, without its dependencies (already there).
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY training /src/training
COPY stream_worker /src/stream_worker
RUN /opt/scorer/bin/pip install -q --no-deps /src \
 && /opt/scorer/bin/pip uninstall -q -y pip \
 && find /opt/scorer -depth -name tests -path '*/site-packages/*/tests' -prune -exec rm -rf {} +

# The final image: the base plus the virtual environment; no build tools, no pip, no caches, not root.
FROM ${BASE_IMAGE}
COPY --from=build /opt/scorer /opt/scorer
COPY deploy/healthcheck.py /opt/scorer/healthcheck.py
# HOME=/tmp: libraries that write a cache (matplotlib's config) find a writable place under a read-only root with a
# tmpfs on /tmp (docker run --read-only --tmpfs /tmp).
ENV PATH=/opt/scorer/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    SCORER_MODEL_DIR=/models/sentiment \
    SCORER_METRICS_HOST=0.0.0.0 \
    SCORER_METRICS_PORT=9464 \
    SCORER_HOST=0.0.0.0 \
    SCORER_PORT=8501 \
    TF_CPP_MIN_LOG_LEVEL=2
USER 65532:65532
EXPOSE 9464 8501
# SIGTERM starts the worker's stop: score what is in flight, flush the producer, commit (seconds with the default
# batch sizes).  Give it 60 s: `docker stop -t 60`, compose's stop_grace_period, Kubernetes' grace period.
STOPSIGNAL SIGTERM
# start-period: a cold start on a loaded 2-core host took up to ~100 s (TensorFlow's import starved of CPU); the
# probe answers meanwhile (503 until the model is loaded and warmed up), failures only count after it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 CMD ["python3", "/opt/scorer/healthcheck.py"]
ENTRYPOINT ["scorer"]
CMD ["worker"]
