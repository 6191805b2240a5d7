# Multi-stage, slim, non-root: installs only what serving needs (no torch, no training extras; ONNX Runtime
# to serve a promoted transformer model).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models models
COPY training training
COPY service service
COPY triage triage
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir ".[redis,transformer]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 triage && mkdir /state && chown triage /state
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY configs configs
COPY data data
ENV PATH=/opt/venv/bin:$PATH \
    TRIAGE_HOME=/state \
    TRIAGE_POLICY_FILE=/app/configs/policy.yaml \
    TRIAGE_SEED_DATA=/app/data/seed \
    PYTHONUNBUFFERED=1
USER triage
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live').status != 200)"
CMD ["sh", "-c", "triage bootstrap && triage serve --host 0.0.0.0 --port 8000"]
