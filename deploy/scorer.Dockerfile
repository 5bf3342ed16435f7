# Worker image: Python 3.11, TF 2.21 CPU, the `scorer` console script. Models are mounted, not baked in.
#   docker build -f deploy/worker.Dockerfile -t sentiment-scorer-worker .
# The same image runs the HTTP door: `docker run ... sentiment-scorer-worker serve --host 0.0.0.0` (port 8501).
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_worker stream_worker
COPY training training
COPY schemas schemas
# tensorflow-text with --no-deps: its metadata asks for the full `tensorflow` wheel; it runs on tensorflow-cpu.
RUN pip install --no-cache-dir ".[worker]" \
 && pip install --no-cache-dir --no-deps tensorflow-text==2.21.1
ENV SCORER_MODEL_DIR=/models/sentiment \
    SCORER_METRICS_HOST=0.0.0.0 \
    SCORER_METRICS_PORT=9464 \
    SCORER_HOST=0.0.0.0 \
    TF_CPP_MIN_LOG_LEVEL=2
USER 65534
EXPOSE 9464 8501
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/readyz').status != 200)"
ENTRYPOINT ["scorer"]
CMD ["worker"]
