"""Usage alerts: raised by ingestion in the transaction of the record that crossed a
threshold, listed and acknowledged by the customer.

- A `usage_threshold` alert when a period's minutes reach a threshold (USAGE_ALERT_THRESHOLDS,
  default 80 and 100) percent of the included minutes, and when its peak of active agents
  reaches that percent of the agents allowed; 100% and above are high priority and need
  action (a trial stops there; a paid plan starts paying overage).
- An `overage` alert when overage first accrues in a period (minutes beyond the included
  ones, or agents beyond the allowed ones), once per period whichever came first; none
  during a trial, which accrues no overage.
- Each at most once per subscription, period, kind, resource and threshold: the table's
  unique constraint decides, so concurrent requests crossing together leave one row.
- Each new alert writes its notification (email and the dashboard's webhook) in the same
  transaction. Payment alerts (dunning's notices) are listed here too.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import repository
from app.alerts.errors import AlertNotFound, InvalidAlertCursor
from app.alerts.repository import RaisedAlert
from app.core.accounts import AccountReference, CustomerNotFound
from app.core.db import StatementTarget
from app.core.metrics import USAGE_ALERTS_RAISED
from app.customers import service as customers_service
from app.models import UsageAlert
from app.notifications import service as notifications_service

KIND_USAGE_THRESHOLD = "usage_threshold"
KIND_OVERAGE = "overage"
KIND_USAGE_ANOMALY = "usage_anomaly"


@dataclass(frozen=True, slots=True)
class UsageChange:
    """A period's counters before and after a write, with the limits they are held to."""

    customer_id: int
    subscription_id: int
    period_start: datetime
    minutes_before: Decimal
    minutes_after: Decimal
    minutes_included: int
    # May be below the true value before the write (see app.usage.repository.TotalsChange):
    # an alert then looks crossed twice, and the unique constraint keeps the first.
    peak_before: int
    peak_after: int
    agents_allowed: int
    bills_overage: bool


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: Sequence[UsageAlert]
    next_cursor: str | None


def _crossed(before: Decimal, after: Decimal, level: Decimal) -> bool:
    return before < level <= after


def _threshold_alert(resource: str, threshold: int, message: str) -> dict[str, Any]:
    return {
        "kind": KIND_USAGE_THRESHOLD,
        "resource": resource,
        "threshold": threshold,
        "priority": "high" if threshold >= 100 else "medium",
        "action_required": threshold >= 100,
        "message": message,
    }


def alerts_crossed(change: UsageChange, thresholds: Sequence[int]) -> list[dict[str, Any]]:
    """The alerts a change of counters crosses into (without the row's common columns)."""
    alerts: list[dict[str, Any]] = []
    minutes_included = Decimal(change.minutes_included)
    agents_allowed = Decimal(change.agents_allowed)
    for threshold in thresholds:
        level = minutes_included * threshold / 100
        if minutes_included > 0 and _crossed(change.minutes_before, change.minutes_after, level):
            alerts.append(
                _threshold_alert(
                    "minutes",
                    threshold,
                    f"{threshold}% of this period's {change.minutes_included:,} included call "
                    "minutes used.",
                )
            )
        level = agents_allowed * threshold / 100
        if agents_allowed > 0 and _crossed(
            Decimal(change.peak_before), Decimal(change.peak_after), level
        ):
            alerts.append(
                _threshold_alert(
                    "agents",
                    threshold,
                    f"{change.peak_after} agents active at once: {threshold}% of the "
                    f"{change.agents_allowed} allowed.",
                )
            )
    if change.bills_overage:
        minutes_over = change.minutes_before <= minutes_included < change.minutes_after
        agents_over = change.peak_before <= change.agents_allowed < change.peak_after
        if minutes_over or agents_over:
            what = (
                f"call minutes beyond the {change.minutes_included:,} included"
                if minutes_over
                else f"agents beyond the {change.agents_allowed} allowed"
            )
            alerts.append(
                {
                    "kind": KIND_OVERAGE,
                    "resource": "",
                    "threshold": 0,
                    "priority": "high",
                    "action_required": False,
                    "message": f"Overage charges have started this period: {what} are billed "
                    "at the plan's overage rate with the next invoice.",
                }
            )
    return alerts


def _count_raised(alerts: Sequence[RaisedAlert]) -> None:
    for alert in alerts:
        USAGE_ALERTS_RAISED.labels(kind=alert.kind).inc()


# The notification each usage alert sends (email and the dashboard's webhook).
_NOTICE_KINDS = {
    KIND_USAGE_THRESHOLD: "usage_threshold",
    KIND_OVERAGE: "overage_started",
    KIND_USAGE_ANOMALY: "usage_anomaly",
}


async def _notify_raised(
    session: StatementTarget, alerts: Sequence[RaisedAlert], now: datetime
) -> None:
    """Each new alert's notice, in the same transaction; keyed by the alert's id, which the
    unique constraint makes once per period, resource and threshold."""
    for alert in alerts:
        await notifications_service.notify(
            session,
            customer_id=alert.customer_id,
            kind=_NOTICE_KINDS[alert.kind],
            dedupe_key=f"usage_alert:{alert.id}",
            payload={
                "subscription_id": alert.subscription_id,
                "alert_id": alert.id,
                "resource": alert.resource,
                "threshold": alert.threshold,
                "priority": alert.priority,
                "action_required": alert.action_required,
                "message": alert.message,
                "period_start": alert.period_start.isoformat(),
                # For an anomaly, the day it is about.
                "day": alert.period_start.isoformat(),
            },
            now=now,
        )


async def raise_usage_alerts(
    session: StatementTarget,
    *,
    changes: Sequence[UsageChange],
    thresholds: Sequence[int],
    now: datetime,
) -> int:
    """Create the alerts the changes crossed, each once per period; returns how many are new.

    One statement, and only when something was crossed: the ingestion path pays nothing
    for records that cross no threshold.
    """
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for change in changes:
        for alert in alerts_crossed(change, thresholds):
            row = {
                **alert,
                "customer_id": change.customer_id,
                "subscription_id": change.subscription_id,
                "period_start": change.period_start,
                "created_at": now,
            }
            key = (
                change.subscription_id,
                change.period_start,
                alert["kind"],
                alert["resource"],
                alert["threshold"],
            )
            rows.setdefault(key, row)
    if not rows:
        return 0
    raised = await repository.insert_once(session, list(rows.values()))
    _count_raised(raised)
    await _notify_raised(session, raised, now)
    return len(raised)


async def raise_usage_anomaly_alert(
    session: AsyncSession,
    *,
    customer_id: int,
    subscription_id: int,
    day_start: datetime,
    threshold_percent: int,
    message: str,
    now: datetime,
) -> bool:
    """A `usage_anomaly` alert for one UTC day (its `period_start` is the day's start), once
    per subscription and day; True when this call raised it."""
    row = {
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "period_start": day_start,
        "kind": KIND_USAGE_ANOMALY,
        "resource": "minutes",
        "threshold": threshold_percent,
        "priority": "medium",
        "action_required": False,
        "message": message,
        "created_at": now,
    }
    raised = await repository.insert_once(session, [row])
    _count_raised(raised)
    await _notify_raised(session, raised, now)
    return len(raised) == 1


async def raise_payment_alert(
    session: AsyncSession,
    *,
    customer_id: int,
    subscription_id: int,
    kind: str,
    message: str,
    priority: str,
    action_required: bool,
    sequence: int = 0,
    now: datetime,
) -> None:
    """A payment alert (`payment_failed`, `payment_recovered`, ...) beside the usage alerts
    in `GET alerts/`, the seed's "payment alerts". Called once per fact (its notification's
    key decides); dated by `now`, which is also its `period_start`, with `sequence` (a retry's
    attempt number) as its threshold so two of a kind never collide."""
    raised = await repository.insert_once(
        session,
        [
            {
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "period_start": now,
                "kind": kind,
                "resource": "",
                "threshold": sequence,
                "priority": priority,
                "action_required": action_required,
                "message": message,
                "created_at": now,
            }
        ],
    )
    _count_raised(raised)


async def _customer_id(session: AsyncSession, account: AccountReference) -> int | None:
    customer = await customers_service.get_by_dashboard_user_id(session, account.dashboard_user_id)
    if customer is None and account.by_service:
        raise CustomerNotFound()
    return customer.id if customer else None


async def list_alerts(
    session: AsyncSession,
    *,
    account: AccountReference,
    acknowledged: bool | None,
    cursor: str | None,
    limit: int,
) -> AlertPage:
    """The account's alerts, newest first; `cursor` continues after a previous page."""
    before_id = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise InvalidAlertCursor()
        before_id = int(cursor)
    customer_id = await _customer_id(session, account)
    if customer_id is None:
        return AlertPage(alerts=[], next_cursor=None)
    alerts = await repository.list_for_customer(
        session,
        customer_id=customer_id,
        acknowledged=acknowledged,
        before_id=before_id,
        limit=limit + 1,
    )
    if len(alerts) > limit:
        return AlertPage(alerts=alerts[:limit], next_cursor=str(alerts[limit - 1].id))
    return AlertPage(alerts=alerts, next_cursor=None)


async def acknowledge_alert(
    session: AsyncSession, *, account: AccountReference, alert_id: int, now: datetime
) -> UsageAlert:
    """Acknowledge one of the account's alerts; acknowledging again changes nothing.
    Another customer's alert is a 404, as if it did not exist."""
    customer_id = await _customer_id(session, account)
    alert = None
    if customer_id is not None:
        alert = await repository.acknowledge(
            session, customer_id=customer_id, alert_id=alert_id, now=now
        )
    if alert is None:
        raise AlertNotFound()
    return alert
