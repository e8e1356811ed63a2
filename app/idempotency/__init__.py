"""Client retries of POST requests: the `Idempotency-Key` header."""
