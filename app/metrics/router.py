from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.deps import ClockDep, SettingsDep
from app.core.errors import Unauthorized
from app.core.metrics import REGISTRY
from app.metrics.access import bearer_token_matches
from app.metrics.store_readings import render_store_readings

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def scrape_metrics(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """This process's metrics and the stores' gauges, for Prometheus with METRICS_TOKEN
    (the app serves this route only when it is set)."""
    token = settings.METRICS_TOKEN
    if token is None or not bearer_token_matches(authorization, token):
        raise Unauthorized()
    store_readings = await render_store_readings(
        request.app.state.sessionmaker, request.app.state.redis, clock
    )
    return Response(generate_latest(REGISTRY) + store_readings, media_type=CONTENT_TYPE_LATEST)
