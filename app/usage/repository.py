"""Every query of usage metering. The hot paths are plain SQL, no ORM objects:

- ingestion reads the customer's subscriptions once, then one statement inserts the records
  (`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING`) and adds what was
  inserted to the period and daily counters (`INSERT ... ON CONFLICT DO UPDATE`), for one
  record or a thousand;
- the quota check and the summary read one row joining the subscription, its plan, its
  add-ons' sums and the current period's counters.

Locks are always taken in one order, records (sorted by customer and call), then period
counters (sorted), then daily counters (sorted), so concurrent requests wait for each other
but never deadlock.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import text

from app.core.db import DriverStatement, StatementTarget
from app.core.periods import AnchorChange
from app.usage.placement import SubscriptionTerms


@dataclass(frozen=True, slots=True)
class CustomerSubscriptions:
    customer_id: int
    subscriptions: list[SubscriptionTerms]


# Made once per record of a batch (a thousand a request): plain slotted classes, not frozen
# ones, whose __init__ sets each field through object.__setattr__ at three times the cost.
@dataclass(slots=True)
class NewUsageRecord:
    customer_id: int
    subscription_id: int
    kind: str
    call_id: str | None
    minutes: Decimal | None
    agents: int | None
    occurred_at: datetime
    period_start: datetime
    period_end: datetime
    fingerprint: str


class InsertedRecord(NamedTuple):
    id: int
    customer_id: int
    call_id: str | None
    fingerprint: str


@dataclass(slots=True)
class StoredRecord:
    id: int
    customer_id: int
    subscription_id: int
    kind: str
    call_id: str | None
    minutes: Decimal | None
    agents: int | None
    occurred_at: datetime
    period_start: datetime
    source: str
    fingerprint: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TotalsChange:
    """A period's counters before and after one statement."""

    subscription_id: int
    period_start: datetime
    minutes_before: Decimal
    minutes_after: Decimal
    # Read from the statement's snapshot: never above the true value before the change (the
    # peak only grows), so a threshold seen crossed may have been crossed a moment earlier by
    # a concurrent request; the alert's unique constraint settles that.
    peak_before: int
    peak_after: int


@dataclass(frozen=True, slots=True)
class PeriodDelta:
    subscription_id: int
    period_start: datetime
    period_end: datetime
    minutes: Decimal
    records: int


@dataclass(frozen=True, slots=True)
class DayDelta:
    subscription_id: int
    day: date
    minutes: Decimal


@dataclass(frozen=True, slots=True)
class RecordReplacement:
    record_id: int
    subscription_id: int
    minutes: Decimal
    occurred_at: datetime
    period_start: datetime
    fingerprint: str
    replaced_payload: str


_SUBSCRIPTIONS_FOR_INGESTION = """
    SELECT c.dashboard_user_id, c.id AS customer_id, s.id AS subscription_id, s.status,
           COALESCE(s.billing_cycle_anchor, s.current_period_start, s.created_at) AS anchor,
           -- A cycle switch restarts the current period: the first anchor still held usage.
           LEAST(s.created_at, s.current_period_start, h.anchor_from[1]) AS starts_at,
           CASE WHEN s.status = 'canceled'
                THEN COALESCE(s.ended_at, s.current_period_end, s.canceled_at) END AS ends_at,
           s.trial_end, p.call_rounding,
           p.included_minutes + COALESCE(a.extra_minutes, 0) AS minutes_included,
           p.max_agents + COALESCE(a.extra_agents, 0) AS agents_allowed,
           h.anchor_effective_at, h.anchor_from, h.anchor_to
    FROM customers c
    LEFT JOIN subscriptions s
      ON s.customer_id = c.id
     AND s.status NOT IN ('pending', 'incomplete', 'incomplete_expired')
    LEFT JOIN subscription_plans p ON p.id = s.plan_id
    LEFT JOIN LATERAL (
        SELECT SUM(ao.extra_minutes * sa.quantity) AS extra_minutes,
               SUM(ao.extra_agents * sa.quantity) AS extra_agents
        FROM subscription_add_ons sa JOIN add_ons ao ON ao.id = sa.add_on_id
        WHERE sa.subscription_id = s.id
    ) a ON true
    LEFT JOIN LATERAL (
        -- The anchor history (usually empty): records are placed by the anchor in force
        -- when they happened.
        SELECT array_agg(ac.effective_at ORDER BY ac.effective_at, ac.id) AS anchor_effective_at,
               array_agg(ac.from_anchor ORDER BY ac.effective_at, ac.id) AS anchor_from,
               array_agg(ac.to_anchor ORDER BY ac.effective_at, ac.id) AS anchor_to
        FROM subscription_anchor_changes ac
        WHERE ac.subscription_id = s.id
    ) h ON true
    WHERE {customers}
"""
# One customer (every user request, most service ones) by equality: PostgreSQL then keeps one
# generic plan for the prepared statement; with an array it re-plans on every execution.
# Both run on the driver directly (DriverStatement), as the insert below: every usage request
# sends them.
_SUBSCRIPTIONS_OF_CUSTOMER = DriverStatement(
    text(_SUBSCRIPTIONS_FOR_INGESTION.format(customers="c.dashboard_user_id = :dashboard_user_id"))
)
_SUBSCRIPTIONS_OF_CUSTOMERS = DriverStatement(
    text(
        _SUBSCRIPTIONS_FOR_INGESTION.format(
            customers="c.dashboard_user_id = ANY(CAST(:dashboard_user_ids AS text[]))"
        )
    )
)


async def load_subscriptions_for_ingestion(
    session: StatementTarget, dashboard_user_ids: Sequence[str]
) -> dict[str, CustomerSubscriptions]:
    """The named customers (by dashboard user id) with every subscription that can hold
    usage; a customer who does not exist is absent."""
    if len(dashboard_user_ids) == 1:
        rows = await _SUBSCRIPTIONS_OF_CUSTOMER.fetch(
            session, {"dashboard_user_id": dashboard_user_ids[0]}
        )
    else:
        rows = await _SUBSCRIPTIONS_OF_CUSTOMERS.fetch(
            session, {"dashboard_user_ids": list(dashboard_user_ids)}
        )
    customers: dict[str, CustomerSubscriptions] = {}
    for row in rows:
        customer = customers.setdefault(
            row.dashboard_user_id, CustomerSubscriptions(row.customer_id, [])
        )
        if row.subscription_id is not None:
            customer.subscriptions.append(
                SubscriptionTerms(
                    subscription_id=row.subscription_id,
                    status=row.status,
                    anchor=row.anchor,
                    starts_at=row.starts_at,
                    ends_at=row.ends_at,
                    trial_end=row.trial_end,
                    call_rounding=row.call_rounding,
                    minutes_included=row.minutes_included,
                    agents_allowed=row.agents_allowed,
                    anchor_changes=tuple(
                        AnchorChange(effective_at, from_anchor, to_anchor)
                        for effective_at, from_anchor, to_anchor in zip(
                            row.anchor_effective_at or (),
                            row.anchor_from or (),
                            row.anchor_to or (),
                            strict=True,
                        )
                    ),
                )
            )
    return customers


# The counters' upserts, shared by the insert of new records and the replacement of old
# ones. `{deltas}` names a relation of (subscription_id, period_start, period_end, minutes,
# agents, records); sorted, so rows are locked in one order.
_UPSERT_PERIOD_TOTALS = """
    INSERT INTO usage_period_totals AS t
        (subscription_id, period_start, period_end, minutes_used, peak_agents, record_count)
    SELECT subscription_id, period_start, period_end, GREATEST(minutes, 0), agents,
           GREATEST(records, 0)
    FROM {deltas}
    ORDER BY subscription_id, period_start
    ON CONFLICT (subscription_id, period_start) DO UPDATE SET
        -- The delta itself, not EXCLUDED: PostgreSQL checks the proposed row against the
        -- constraints before it finds the conflict, so a replacement's negative delta can
        -- only travel this way (its period's row always exists).
        minutes_used = t.minutes_used + (
            SELECT x.minutes FROM {deltas} x
            WHERE x.subscription_id = t.subscription_id AND x.period_start = t.period_start
        ),
        peak_agents = GREATEST(t.peak_agents, EXCLUDED.peak_agents),
        record_count = t.record_count + (
            SELECT x.records FROM {deltas} x
            WHERE x.subscription_id = t.subscription_id AND x.period_start = t.period_start
        )
    RETURNING t.subscription_id, t.period_start, t.minutes_used, t.peak_agents
"""
_UPSERT_DAILY_TOTALS = """
    INSERT INTO usage_daily_totals AS d (subscription_id, day, minutes_used)
    SELECT subscription_id, day, minutes FROM {deltas}
    -- After the period counters, always (the scalar subquery runs them to completion first):
    -- the one lock order that keeps concurrent requests from deadlocking.
    WHERE (SELECT count(*) FROM totals) >= 0
    ORDER BY subscription_id, day
    ON CONFLICT (subscription_id, day) DO UPDATE SET
        minutes_used = d.minutes_used + EXCLUDED.minutes_used
    RETURNING 1
"""
# The period counters' peaks as the statement's snapshot saw them (no lock: see TotalsChange).
_PEAKS_BEFORE = """
    SELECT t.subscription_id, t.period_start, t.peak_agents
    FROM usage_period_totals t
    JOIN (SELECT DISTINCT subscription_id, period_start FROM {keys}) k
      USING (subscription_id, period_start)
"""
_CHANGES = """
    SELECT 'period' AS row_type, NULL::bigint AS id, NULL::bigint AS customer_id,
           NULL::text AS call_id, NULL::text AS fingerprint,
           t.subscription_id, t.period_start, t.minutes_used, t.peak_agents,
           p.minutes AS minutes_delta, b.peak_agents AS peak_before
    FROM totals t
    JOIN period_deltas p USING (subscription_id, period_start)
    LEFT JOIN peaks_before b USING (subscription_id, period_start)
"""

_INSERT_RECORDS = DriverStatement(
    text(
        f"""
    -- Minutes travel as text (exact decimals, and cheaper to send than numeric), and each
    -- period's end once, not once per record.
    WITH input AS (
        SELECT customer_id, subscription_id, kind, call_id, CAST(minutes AS numeric) AS minutes,
               agents, occurred_at, period_start, fingerprint, position
        FROM unnest(
            CAST(:customer_ids AS bigint[]), CAST(:subscription_ids AS bigint[]),
            CAST(:kinds AS text[]), CAST(:call_ids AS text[]), CAST(:minutes AS text[]),
            CAST(:agents AS bigint[]), CAST(:occurred_at AS timestamptz[]),
            CAST(:period_starts AS timestamptz[]), CAST(:fingerprints AS text[])
        ) WITH ORDINALITY AS i(customer_id, subscription_id, kind, call_id, minutes, agents,
                               occurred_at, period_start, fingerprint, position)
    ),
    periods AS (
        SELECT * FROM unnest(
            CAST(:period_subscription_ids AS bigint[]), CAST(:period_keys AS timestamptz[]),
            CAST(:period_ends AS timestamptz[])
        ) AS p(subscription_id, period_start, period_end)
    ),
    inserted AS (
        INSERT INTO usage_records (customer_id, subscription_id, kind, call_id, minutes,
                                   agents, occurred_at, period_start, source,
                                   request_fingerprint, created_at)
        SELECT customer_id, subscription_id, kind, call_id, minutes, agents, occurred_at,
               period_start, :source, fingerprint, :now
        FROM input
        ORDER BY position
        -- A call already recorded (by an earlier request, a concurrent one, or earlier in
        -- this batch) is skipped here and answered from the stored record afterwards.
        ON CONFLICT (customer_id, call_id) WHERE call_id IS NOT NULL DO NOTHING
        RETURNING id, customer_id, subscription_id, kind, call_id, minutes, agents,
                  occurred_at, period_start, request_fingerprint
    ),
    -- Aggregating reads every inserted row first: all record locks before any counter lock.
    period_deltas AS (
        SELECT n.subscription_id, n.period_start, MAX(p.period_end) AS period_end,
               COALESCE(SUM(n.minutes), 0) AS minutes, COALESCE(MAX(n.agents), 0) AS agents,
               COUNT(*) AS records
        FROM inserted n
        JOIN periods p USING (subscription_id, period_start)
        GROUP BY n.subscription_id, n.period_start
    ),
    day_deltas AS (
        SELECT subscription_id, CAST(occurred_at AT TIME ZONE 'UTC' AS date) AS day,
               SUM(minutes) AS minutes
        FROM inserted
        WHERE kind = 'minutes'
        GROUP BY 1, 2
    ),
    peaks_before AS ({_PEAKS_BEFORE.format(keys="input")}),
    totals AS ({_UPSERT_PERIOD_TOTALS.format(deltas="period_deltas")}),
    daily AS ({_UPSERT_DAILY_TOTALS.format(deltas="day_deltas")})
    SELECT 'record' AS row_type, id, customer_id, call_id, request_fingerprint AS fingerprint,
           NULL::bigint AS subscription_id, NULL::timestamptz AS period_start,
           NULL::numeric AS minutes_used, NULL::bigint AS peak_agents,
           NULL::numeric AS minutes_delta, NULL::bigint AS peak_before
    FROM inserted
    UNION ALL
    {_CHANGES}
    """  # noqa: S608 (built from this module's constant fragments, never from input)
    )
)


def _totals_change(row: Any) -> TotalsChange:
    return TotalsChange(
        subscription_id=row.subscription_id,
        period_start=row.period_start,
        minutes_before=row.minutes_used - row.minutes_delta,
        minutes_after=row.minutes_used,
        peak_before=row.peak_before or 0,
        peak_after=row.peak_agents,
    )


async def insert_records(
    session: StatementTarget, records: Sequence[NewUsageRecord], *, source: str, now: datetime
) -> tuple[list[InsertedRecord], list[TotalsChange]]:
    """Insert the records whose call is not recorded yet and count them, in one statement.

    `records` must be sorted by (customer_id, call_id): concurrent batches then claim their
    calls in one order. Returns the rows inserted and the counters they changed.
    """
    period_ends = {
        (record.subscription_id, record.period_start): record.period_end for record in records
    }
    rows = await _INSERT_RECORDS.fetch(
        session,
        {
            "customer_ids": [record.customer_id for record in records],
            "subscription_ids": [record.subscription_id for record in records],
            "kinds": [record.kind for record in records],
            "call_ids": [record.call_id for record in records],
            "minutes": [
                None if record.minutes is None else str(record.minutes) for record in records
            ],
            "agents": [record.agents for record in records],
            "occurred_at": [record.occurred_at for record in records],
            "period_starts": [record.period_start for record in records],
            "fingerprints": [record.fingerprint for record in records],
            "period_subscription_ids": [key[0] for key in period_ends],
            "period_keys": [key[1] for key in period_ends],
            "period_ends": list(period_ends.values()),
            "source": source,
            "now": now,
        },
    )
    inserted: list[InsertedRecord] = []
    changes: list[TotalsChange] = []
    for row in rows:
        if row[0] == "record":
            # Columns 1 to 4 (id, customer_id, call_id, fingerprint) by position: a thousand
            # rows a batch, read without an attribute lookup each.
            inserted.append(InsertedRecord._make(row[1:5]))
        else:
            changes.append(_totals_change(row))
    return inserted, changes


_ADJUST_TOTALS = DriverStatement(
    text(
        f"""
    WITH period_deltas AS (
        SELECT *, 0::bigint AS agents FROM unnest(
            CAST(:subscription_ids AS bigint[]), CAST(:period_starts AS timestamptz[]),
            CAST(:period_ends AS timestamptz[]), CAST(:minutes AS numeric[]),
            CAST(:records AS bigint[])
        ) AS p(subscription_id, period_start, period_end, minutes, records)
    ),
    day_deltas AS (
        SELECT * FROM unnest(
            CAST(:day_subscription_ids AS bigint[]), CAST(:days AS date[]),
            CAST(:day_minutes AS numeric[])
        ) AS d(subscription_id, day, minutes)
    ),
    peaks_before AS ({_PEAKS_BEFORE.format(keys="period_deltas")}),
    totals AS ({_UPSERT_PERIOD_TOTALS.format(deltas="period_deltas")}),
    daily AS ({_UPSERT_DAILY_TOTALS.format(deltas="day_deltas")})
    {_CHANGES}
    """  # noqa: S608 (built from this module's constant fragments, never from input)
    )
)


async def adjust_totals(
    session: StatementTarget, periods: Sequence[PeriodDelta], days: Sequence[DayDelta]
) -> list[TotalsChange]:
    """Add signed deltas to period and daily counters (one per key; a period's row must
    exist before a negative delta reaches it)."""
    rows = await _ADJUST_TOTALS.fetch(
        session,
        {
            "subscription_ids": [delta.subscription_id for delta in periods],
            "period_starts": [delta.period_start for delta in periods],
            "period_ends": [delta.period_end for delta in periods],
            "minutes": [delta.minutes for delta in periods],
            "records": [delta.records for delta in periods],
            "day_subscription_ids": [delta.subscription_id for delta in days],
            "days": [delta.day for delta in days],
            "day_minutes": [delta.minutes for delta in days],
        },
    )
    return [_totals_change(row) for row in rows]


_RECORDS_BY_CALL = """
    SELECT r.id, r.customer_id, r.subscription_id, r.kind, r.call_id, r.minutes, r.agents,
           r.occurred_at, r.period_start, r.source, r.request_fingerprint AS fingerprint,
           r.created_at
    FROM usage_records r
    JOIN unnest(CAST(:customer_ids AS bigint[]), CAST(:call_ids AS text[])) AS k(c, call)
      ON r.customer_id = k.c AND r.call_id = k.call
    WHERE r.call_id IS NOT NULL
    ORDER BY r.customer_id, r.call_id
"""
_FIND_RECORDS_BY_CALL = DriverStatement(text(_RECORDS_BY_CALL))
_LOCK_RECORDS_BY_CALL = DriverStatement(text(_RECORDS_BY_CALL + " FOR UPDATE OF r"))


async def find_records_by_call(
    session: StatementTarget, keys: Sequence[tuple[int, str]], *, for_update: bool
) -> dict[tuple[int, str], StoredRecord]:
    """The stored records of (customer_id, call_id) pairs; locked, in key order, when the
    caller may replace them."""
    statement = _LOCK_RECORDS_BY_CALL if for_update else _FIND_RECORDS_BY_CALL
    rows = await statement.fetch(
        session,
        {"customer_ids": [key[0] for key in keys], "call_ids": [key[1] for key in keys]},
    )
    return {(row.customer_id, row.call_id): StoredRecord(*row) for row in rows}


_REPLACE_RECORDS = DriverStatement(
    text(
        """
    UPDATE usage_records AS r
    SET subscription_id = u.subscription_id, minutes = u.minutes, occurred_at = u.occurred_at,
        period_start = u.period_start, source = 'service', request_fingerprint = u.fingerprint,
        replaced_payload = u.replaced_payload
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:subscription_ids AS bigint[]),
        CAST(:minutes AS numeric[]), CAST(:occurred_at AS timestamptz[]),
        CAST(:period_starts AS timestamptz[]), CAST(:fingerprints AS text[]),
        CAST(:payloads AS text[])
    ) AS u(id, subscription_id, minutes, occurred_at, period_start, fingerprint,
           replaced_payload)
    WHERE r.id = u.id
    """
    )
)


async def replace_records(
    session: StatementTarget, replacements: Sequence[RecordReplacement]
) -> None:
    await _REPLACE_RECORDS.execute(
        session,
        {
            "ids": [item.record_id for item in replacements],
            "subscription_ids": [item.subscription_id for item in replacements],
            "minutes": [item.minutes for item in replacements],
            "occurred_at": [item.occurred_at for item in replacements],
            "period_starts": [item.period_start for item in replacements],
            "fingerprints": [item.fingerprint for item in replacements],
            "payloads": [item.replaced_payload for item in replacements],
        },
    )


_CLAIM_RECORDS = DriverStatement(
    text("UPDATE usage_records SET source = 'service' WHERE id = ANY(CAST(:ids AS bigint[]))")
)


async def claim_records(session: StatementTarget, record_ids: Sequence[int]) -> None:
    """Mark user-sent records as confirmed by the telephony backend (same fields)."""
    await _CLAIM_RECORDS.execute(session, {"ids": list(record_ids)})
