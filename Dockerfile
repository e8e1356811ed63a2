# The API image; the worker runs the same image with `arq app.worker.WorkerSettings`.
FROM python:3.11-slim AS build
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first, from the lock file, so code changes reuse this layer. No dev group and
# no `embedded` extra: production talks to real PostgreSQL and Redis servers.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home billing
WORKDIR /app
COPY --from=build --chown=billing:billing /app /app
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 ENVIRONMENT=production HOST=0.0.0.0 PORT=8000
USER billing
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
# Migrations before the server starts: a new release never serves against an old schema.
# `billing serve` runs uvicorn on HOST:PORT, trusting X-Forwarded-For only from the proxies
# in FORWARDED_ALLOW_IPS (none by default), with JSON logs (ENVIRONMENT=production).
CMD ["sh", "-c", "billing migrate && exec billing serve"]
