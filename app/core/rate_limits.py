"""Rate limits (README, "Rate limits"): one-minute windows counted in Redis with `limits`.

- Who is counted: a verified caller by the token's user id (a `service` token by its own
  principal, on its own higher limit, since the telephony backend sends every customer's calls
  through it); the Stripe webhook and the token-free catalog by client IP; PDF downloads
  additionally per caller, tighter.
- The limits are FastAPI dependencies. The per-caller one depends on `CurrentPrincipal`, which
  FastAPI solves once per request and shares with the route, so the token is decoded once.
  Routers put them first, so a refused request opens no database session.
- Fixed windows (one Lua call: INCRBY, and EXPIRE on the first hit). A window starts at a
  key's first hit and a refusal still counts, so `Retry-After` is exactly the time left in it.
- Leases: a process asks Redis for a share of a limit at once (a hundredth of it, at most
  100 requests; one request for limits under 200) and counts the requests it lets through
  against that share in memory, until the share or the window is used up. The share is counted
  in Redis when it is taken, so all processes together never let more than the limit through
  in a window; a share left unused when the window ends only made callers meet the limit a
  little early. The telephony backend's 12,000 a minute then costs one Redis call per hundred
  requests instead of one per request.
- Redis failing must not fail the API: the request goes through unchecked (a warning, and
  `billing_rate_limit_fail_open_total`), with short socket timeouts, and the checks pause
  for a few seconds after a failure so a dead Redis costs one timeout, not one per request.
"""

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog
from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from app.core.auth import CurrentPrincipal
from app.core.config import ConfigurationError, Settings
from app.core.errors import AppError
from app.core.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED_REQUESTS

logger = structlog.get_logger(__name__)

# After Redis fails, this long without asking it: requests pass unchecked instead of each
# waiting out a timeout. Short, so limits return soon after Redis does.
PAUSE_AFTER_FAILURE_SECONDS = 5.0
KEY_PREFIX = "billing:rate-limits"
# A lease is at most this share of a limit, and at most MAX_LEASE requests.
LEASE_DIVISOR = 100
MAX_LEASE = 100
# Leases kept in memory before the expired ones are dropped.
MAX_LEASES = 10_000


def lease_size(per_minute: int) -> int:
    """How many requests one Redis call takes for a limit of `per_minute`."""
    return max(1, min(MAX_LEASE, per_minute // LEASE_DIVISOR))


@dataclass(slots=True)
class _Lease:
    """Requests taken from Redis ahead, not yet let through, and until when they are valid
    (the window's end, on the monotonic clock)."""

    left: int
    until: float


class RateLimit(StrEnum):
    USER = "user"
    SERVICE = "service"
    PDF = "pdf"
    WEBHOOK_IP = "webhook_ip"
    PUBLIC_IP = "public_ip"
    CONSOLE_SIGN_IN_IP = "console_sign_in_ip"


def per_minute_limits(settings: Settings) -> dict[RateLimit, int]:
    return {
        RateLimit.USER: settings.RATE_LIMIT_PER_USER_PER_MINUTE,
        RateLimit.SERVICE: settings.RATE_LIMIT_PER_SERVICE_PER_MINUTE,
        RateLimit.PDF: settings.RATE_LIMIT_PDF_PER_USER_PER_MINUTE,
        RateLimit.WEBHOOK_IP: settings.RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE,
        RateLimit.PUBLIC_IP: settings.RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE,
        RateLimit.CONSOLE_SIGN_IN_IP: settings.RATE_LIMIT_CONSOLE_SIGN_IN_PER_IP_PER_MINUTE,
    }


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry after the seconds in Retry-After."

    def __init__(self, *, limit: RateLimit, per_minute: int, retry_after: int) -> None:
        super().__init__(
            f"Too many requests: at most {per_minute} a minute. Retry in {retry_after} s.",
            details={
                "limit": limit.value,
                "per_minute": per_minute,
                "retry_after_seconds": retry_after,
            },
            headers={"Retry-After": str(retry_after)},
        )


class RequestRateLimiter:
    """Counts requests against the configured limits; `hit` raises `RateLimited`."""

    def __init__(
        self,
        storage: Storage,
        per_minute: Mapping[RateLimit, int],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._storage = storage
        self._items: dict[RateLimit, RateLimitItem] = {
            limit: RateLimitItemPerMinute(amount) for limit, amount in per_minute.items()
        }
        self._monotonic = monotonic
        self._close = close
        self._paused_until = -math.inf
        self._leases: dict[tuple[RateLimit, str], _Lease] = {}
        self._leasing: set[tuple[RateLimit, str]] = set()

    @classmethod
    def in_memory(
        cls, settings: Settings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> "RequestRateLimiter":
        """Counts in this process only: for tests that ask for it, never for the API."""
        return cls(
            MemoryStorage(wrap_exceptions=True), per_minute_limits(settings), monotonic=monotonic
        )

    async def hit(self, limit: RateLimit, identifier: str) -> None:
        """Count one request of `identifier` against `limit`; over it, raise `RateLimited`."""
        now = self._monotonic()
        lease = self._leases.get((limit, identifier))
        if lease is not None and lease.left > 0 and now < lease.until:
            lease.left -= 1
            return
        if now < self._paused_until:
            RATE_LIMIT_FAIL_OPEN.labels(reason="paused").inc()
            return
        item = self._items[limit]
        key = item.key_for(limit.value, identifier)
        # One lease asked for at a time per caller: requests arriving while it is on its way
        # ask for themselves only, so a burst does not take a lease per request.
        size = 1 if (limit, identifier) in self._leasing else lease_size(item.amount)
        if size > 1:
            self._leasing.add((limit, identifier))
        try:
            count = await self._storage.incr(key, item.get_expiry(), amount=size)
            # The part of this lease that falls within the limit (all of it, or the rest).
            granted = min(size, item.amount - (count - size))
            if granted == 1:
                return
            # The window's end, on the storage's own clock (limits stamps it with time.time()).
            reset_at = await self._storage.get_expiry(key)
            if granted > 1:
                self._keep_lease(
                    (limit, identifier), granted - 1, self._monotonic() + reset_at - time.time()
                )
                return
        except (StorageError, OSError, TimeoutError) as error:
            self._paused_until = self._monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            RATE_LIMIT_FAIL_OPEN.labels(reason="storage_error").inc()
            logger.warning(
                "rate_limit_store_unavailable",
                limit=limit.value,
                error=str(error) or type(error).__name__,
                unchecked_for_seconds=PAUSE_AFTER_FAILURE_SECONDS,
            )
            return
        finally:
            if size > 1:
                self._leasing.discard((limit, identifier))
        RATE_LIMITED_REQUESTS.labels(limit=limit.value).inc()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(limit=limit, per_minute=item.amount, retry_after=retry_after)

    def _keep_lease(self, key: tuple[RateLimit, str], left: int, until: float) -> None:
        if len(self._leases) >= MAX_LEASES:
            now = self._monotonic()
            self._leases = {
                kept: lease
                for kept, lease in self._leases.items()
                if lease.left > 0 and lease.until > now
            }
            if len(self._leases) >= MAX_LEASES:
                self._leases.clear()
        lease = self._leases.get(key)
        if lease is not None and lease.left > 0 and lease.until >= until:
            # Two leases of one window (concurrent requests both asked): both are counted.
            lease.left += left
        else:
            self._leases[key] = _Lease(left, until)

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def _limits_storage_uri(redis_url: str) -> str:
    """`limits`' name for the same server: async+redis://, async+rediss://,
    async+redis+unix:// (the embedded Redis listens on a socket)."""
    for scheme, limits_scheme in (
        ("redis://", "async+redis://"),
        ("rediss://", "async+rediss://"),
        ("unix://", "async+redis+unix://"),
    ):
        if redis_url.startswith(scheme):
            return limits_scheme + redis_url.removeprefix(scheme)
    raise ConfigurationError("REDIS_URL must be a redis://, rediss:// or unix:// URL")


def create_rate_limiter(
    settings: Settings, *, monotonic: Callable[[], float] = time.monotonic
) -> RequestRateLimiter:
    """The API's limiter, on the Redis of REDIS_URL. Connects on the first request."""
    timeout = settings.RATE_LIMIT_REDIS_TIMEOUT_SECONDS
    # Our own pool, apart from arq's (5 s timeouts), so that it can be closed at shutdown
    # and a slow Redis costs a request at most `timeout`.
    pool = ConnectionPool.from_url(
        settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    storage = RedisStorage(
        _limits_storage_uri(settings.redis_url),
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix=KEY_PREFIX,
        # Handed through to redis-py's client (limits documents `connection_pool`).
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return RequestRateLimiter(
        storage, per_minute_limits(settings), monotonic=monotonic, close=pool.aclose
    )


def _limiter(request: Request) -> RequestRateLimiter:
    limiter: RequestRateLimiter = request.app.state.rate_limiter
    return limiter


def client_ip(request: Request) -> str:
    # The ASGI client address: behind a proxy, the server must be told to trust its
    # X-Forwarded-For (uvicorn --forwarded-allow-ips); reading the header here would let any
    # client pick its own IP.
    return request.client.host if request.client else "unknown"


async def limit_per_caller(request: Request, principal: CurrentPrincipal) -> None:
    limit = RateLimit.SERVICE if principal.is_service else RateLimit.USER
    await _limiter(request).hit(limit, principal.user_id)


async def limit_pdf_rendering(request: Request, principal: CurrentPrincipal) -> None:
    await _limiter(request).hit(RateLimit.PDF, principal.user_id)


async def limit_webhook_per_ip(request: Request) -> None:
    await _limiter(request).hit(RateLimit.WEBHOOK_IP, client_ip(request))


async def limit_public_per_ip(request: Request) -> None:
    await _limiter(request).hit(RateLimit.PUBLIC_IP, client_ip(request))


# For `dependencies=[...]` of a router or route.
PER_CALLER: DependsParam = Depends(limit_per_caller)
PDF_RENDERING: DependsParam = Depends(limit_pdf_rendering)
WEBHOOK_PER_IP: DependsParam = Depends(limit_webhook_per_ip)
PUBLIC_PER_IP: DependsParam = Depends(limit_public_per_ip)
