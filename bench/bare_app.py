"""The bare comparison app: one asyncpg statement per request, nothing else.

Run by `make bench` under uvicorn beside the service, with the same loop and HTTP parser.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

DSN = os.environ.get("BENCH_BARE_DSN", "")
state: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    state["pool"] = await asyncpg.create_pool(DSN, min_size=2, max_size=10)
    async with state["pool"].acquire() as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare_rows (id bigserial primary key, token text)"
        )
    yield
    await state["pool"].close()


app = FastAPI(lifespan=lifespan)


@app.get("/hello")
async def hello() -> dict[str, object]:
    # No database: the ceiling of FastAPI under uvicorn here, and the proof that the load
    # generator can go faster than the endpoints compared.
    return {"success": True}


@app.get("/bare-select")
async def bare_select() -> dict[str, object]:
    async with state["pool"].acquire() as connection:
        row = await connection.fetchrow("SELECT id, name FROM subscription_plans WHERE id = $1", 1)
    return {"success": True, "plan": dict(row) if row else None}


@app.post("/bare-insert")
async def bare_insert() -> dict[str, object]:
    async with state["pool"].acquire() as connection:
        await connection.execute(
            "INSERT INTO bench_bare_rows (token) VALUES ($1)", uuid.uuid4().hex
        )
    return {"success": True}
