"""Prometheus metrics: the request-latency middleware, `/metrics` for the API (process
metrics plus what PostgreSQL and Redis hold at scrape time) and the worker's own endpoint."""
