"""What the console's views use of the API process: its settings, clock, database, Stripe
gateway, job queue and rate limiter, read from the FastAPI app it is mounted on (they exist
only once the app's lifespan has started)."""

from dataclasses import dataclass

from arq.connections import ArqRedis
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.core.clock import Clock
from app.core.config import Settings
from app.core.rate_limits import RequestRateLimiter
from app.stripe_gateway.client import StripeGateway


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    api: FastAPI

    @property
    def settings(self) -> Settings:
        settings: Settings = self.api.state.settings
        return settings

    @property
    def clock(self) -> Clock:
        clock: Clock = self.api.state.clock
        return clock

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        sessionmaker: async_sessionmaker[AsyncSession] = self.api.state.sessionmaker
        return sessionmaker

    @property
    def gateway(self) -> StripeGateway:
        gateway: StripeGateway = self.api.state.stripe_gateway
        return gateway

    @property
    def redis(self) -> ArqRedis:
        redis: ArqRedis = self.api.state.redis
        return redis

    @property
    def rate_limiter(self) -> RequestRateLimiter:
        limiter: RequestRateLimiter = self.api.state.rate_limiter
        return limiter


def console_context(request: Request) -> ConsoleContext:
    # `request.app` is sqladmin's own Starlette app, mounted on the API at /admin.
    context: ConsoleContext = request.app.state.console
    return context
