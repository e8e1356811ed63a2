import asyncio
from typing import Literal

from arq.connections import ArqRedis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.health.tasks import read_worker_heartbeat

router = APIRouter(tags=["health"])

# A probe that hangs is worse than one that says no: the orchestrator waits on it.
PROBE_TIMEOUT_SECONDS = 2


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    database: bool
    redis: bool
    worker_last_seen: str | None = None


@router.get("/healthz", response_model=Liveness, summary="The process is up")
async def healthz() -> Liveness:
    return Liveness()


async def _database_answers(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _redis_answers(redis: ArqRedis) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            return bool(await redis.ping())
    except Exception:
        return False


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a store does not answer"}},
    summary="The database and Redis answer",
)
async def readyz(request: Request) -> JSONResponse:
    database = await _database_answers(request.app.state.engine)
    redis_pool: ArqRedis = request.app.state.redis
    redis = await _redis_answers(redis_pool)
    worker_last_seen = await read_worker_heartbeat(redis_pool) if redis else None
    readiness = Readiness(
        status="ready" if database and redis else "not_ready",
        database=database,
        redis=redis,
        worker_last_seen=worker_last_seen.isoformat() if worker_last_seen else None,
    )
    return JSONResponse(
        status_code=200 if readiness.status == "ready" else 503,
        content=readiness.model_dump(mode="json"),
    )
