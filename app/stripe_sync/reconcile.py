"""`billing reconcile` and its nightly run (`app.stripe_sync.tasks`): catch up on the events
Stripe has that we never stored, then compare local state with Stripe's and, asked to,
repair it from Stripe.

Stripe is read first, outside any transaction; each repair is then a short transaction of
its own, under the object's webhook watermark: a repair never overwrites state that a newer
event applied meanwhile, and an older event processed after it re-fetches from Stripe
instead of undoing it.
"""

from dataclasses import asdict, dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.operator_alerts import service as operator_alerts_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_sync.catch_up import CatchUpReport, catch_up_events
from app.stripe_sync.drift import Drift, find_drift
from app.stripe_sync.repair import repair_drift

logger = structlog.get_logger(__name__)

# The alert lists this many differences; the operator runs `billing reconcile` for all.
ALERT_DETAILS_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    catch_up: CatchUpReport
    found: list[Drift]
    repaired: int
    remaining: list[Drift]


async def reconcile_with_stripe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    fix: bool,
    since: datetime | None,
    max_attempts: int,
) -> ReconcileReport:
    """Catch up on missed events, then find drift; with `fix`, repair it and check again,
    so `remaining` is what is still different after the repair."""
    catch_up = await catch_up_events(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        since=since,
        max_attempts=max_attempts,
    )
    check = await find_drift(sessionmaker=sessionmaker, gateway=gateway, clock=clock)
    if not fix or not check.drifts:
        return ReconcileReport(catch_up, check.drifts, 0, check.drifts)
    repaired = await repair_drift(sessionmaker=sessionmaker, check=check)
    after = await find_drift(sessionmaker=sessionmaker, gateway=gateway, clock=clock)
    return ReconcileReport(catch_up, check.drifts, repaired, after.drifts)


async def raise_drift_alert(session: AsyncSession, *, drifts: list[Drift], now: datetime) -> None:
    """One operator alert a day, however often drift is found that day."""
    await operator_alerts_service.raise_alert(
        session,
        kind="stripe_drift",
        message=f"{len(drifts)} differences between local state and Stripe; "
        "run `billing reconcile` to see them and `billing reconcile --fix` to repair them.",
        details={
            "count": len(drifts),
            "drift": [asdict(drift) for drift in drifts[:ALERT_DETAILS_LIMIT]],
        },
        dedupe_key=f"stripe_drift:{now.date().isoformat()}",
        now=now,
    )


async def reconcile_and_alert(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    max_attempts: int,
) -> ReconcileReport:
    """The nightly check: catch up, find drift, repair nothing, alert on drift."""
    report = await reconcile_with_stripe(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        fix=False,
        since=None,
        max_attempts=max_attempts,
    )
    if report.remaining:
        logger.warning("stripe_drift", count=len(report.remaining))
        async with sessionmaker.begin() as session:
            await raise_drift_alert(session, drifts=report.remaining, now=clock.now())
    return report


def drift_table(drifts: list[Drift]) -> list[str]:
    """The drift as aligned text columns: object, field, local, stripe."""
    rows = [("OBJECT", "FIELD", "LOCAL", "STRIPE")] + [
        (drift.object, drift.field, drift.local, drift.stripe) for drift in drifts
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
