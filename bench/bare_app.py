"""The bare comparison app: one asyncpg statement per request, nothing else.

Run by `make bench` under uvicorn beside the service, with the same loop and HTTP parser.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.core.garbage_collection import tune_for_serving

DSN = os.environ.get("BENCH_BARE_DSN", "")
state: dict[str, asyncpg.Pool] = {}


async def _no_reset(_: asyncpg.Connection) -> None:
    """Nothing to clean: the endpoints below leave no session state behind."""


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # No reset query when a connection goes back to the pool, as on the service's hot paths
    # (app/core/db.py): asyncpg's default sends one after every request, a second round trip
    # that the ratios would count in the service's favour.
    state["pool"] = await asyncpg.create_pool(DSN, min_size=2, max_size=10, reset=_no_reset)
    async with state["pool"].acquire() as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare_rows (id bigserial primary key, token text)"
        )
    # The service's own collector settings: the ratios compare the endpoints, not the
    # processes' settings.
    tune_for_serving()
    yield
    await state["pool"].close()


api = FastAPI(lifespan=lifespan)

HELLO = b'{"success":true}'
HELLO_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"16")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """`GET /hello` answered before any framework: no database and next to no work, so its
    rate is what the loader can send through uvicorn on this machine, the proof that the load
    generator goes faster than the endpoints compared. Everything else is the FastAPI app."""
    if scope["type"] == "http" and scope["path"] == "/hello":
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
        return
    await api(scope, receive, send)


@api.get("/bare-select")
async def bare_select() -> dict[str, object]:
    async with state["pool"].acquire() as connection:
        row = await connection.fetchrow("SELECT id, name FROM subscription_plans WHERE id = $1", 1)
    return {"success": True, "plan": dict(row) if row else None}


@api.post("/bare-insert")
async def bare_insert() -> dict[str, object]:
    async with state["pool"].acquire() as connection:
        await connection.execute(
            "INSERT INTO bench_bare_rows (token) VALUES ($1)", uuid.uuid4().hex
        )
    return {"success": True}
