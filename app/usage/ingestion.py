"""Recording usage: POST usage/ (one record) and usage/batch/ (up to 1,000), one code path.

Per request, whatever the number of records: one read of the customers' subscriptions, one
statement inserting the new records and adding them to the counters, and only when needed
one read of the calls already recorded, the replacements, and the alerts crossed.

Idempotency is per customer and `call_id` (the unique index uq_usage_records_customer_call):
- the same fields again (as the client sent them: a hash of them is stored) is a duplicate,
  answered from the stored record and counted once;
- different fields under the same call_id are a `usage_conflict`, except that the
  telephony backend (a `service` token) replaces what a user token sent first, so a user
  cannot pre-empt the real record: the old fields are kept in `replaced_payload` and the
  counters move by the difference.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from app.alerts import service as alerts_service
from app.core.accounts import AccountReference, account_reference
from app.core.auth import Principal
from app.core.db import StatementTarget
from app.core.errors import AppError
from app.core.periods import UsagePeriod, usage_period_at
from app.usage import repository
from app.usage.call_minutes import MAX_CALL_MINUTES, MAX_CALL_SECONDS, minutes_for_call
from app.usage.errors import (
    CallTooLong,
    CustomerNotFound,
    InvalidUsageRecord,
    NoActiveSubscription,
    UsageConflict,
    UsageInFuture,
)
from app.usage.overage import began_in_trial
from app.usage.placement import FUTURE_TOLERANCE, SubscriptionTerms, place_record
from app.usage.repository import (
    DayDelta,
    NewUsageRecord,
    PeriodDelta,
    RecordReplacement,
    StoredRecord,
    TotalsChange,
)
from app.usage.schemas import UsageRecordCreate, UsageRecordPublic

RecordStatus = Literal["created", "duplicate", "conflict", "invalid"]

_record_adapter = TypeAdapter(UsageRecordCreate)


@dataclass(slots=True)
class RecordOutcome:
    status: RecordStatus
    call_id: str | None = None
    record_id: int | None = None
    # Built for POST usage/ only: a batch answers with the id.
    record: UsageRecordPublic | None = None
    replaced: bool = False
    error: AppError | None = None


def _failed(error: AppError, call_id: str | None = None) -> RecordOutcome:
    # A batch answers `conflict` exactly where POST usage/ would answer 409.
    status: RecordStatus = "conflict" if error.status_code == 409 else "invalid"
    return RecordOutcome(status=status, call_id=call_id, error=error)


def _canonical(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def request_fingerprint(record: UsageRecordCreate) -> str:
    """A hash of the record's fields as the client sent them (5 and 5.0 are the same).

    The hashed text is exactly `json.dumps(fields, sort_keys=True, separators=(",", ":"))`
    (stored fingerprints must keep matching), written out field by field: json.dumps was a
    tenth of a batch's time.
    """
    agents = record.agents_active
    timestamp = record.timestamp
    encoded = (
        f'{{"agents_active":{"null" if agents is None else int(agents)},'
        f'"call_id":{_json_text(record.call_id)},'
        f'"duration_seconds":{_json_text(_canonical(record.duration_seconds))},'
        f'"minutes_used":{_json_text(_canonical(record.minutes_used))},'
        f'"timestamp":{_json_text(None if timestamp is None else timestamp.isoformat())}}}'
    )
    return hashlib.sha256(encoded.encode()).hexdigest()


def _check_measurement(record: UsageRecordCreate, now: datetime) -> None:
    if record.timestamp is not None and record.timestamp > now + FUTURE_TOLERANCE:
        raise UsageInFuture()
    if (record.minutes_used is not None and record.minutes_used > MAX_CALL_MINUTES) or (
        record.duration_seconds is not None and record.duration_seconds > MAX_CALL_SECONDS
    ):
        raise CallTooLong()


@dataclass(slots=True)
class _Accepted:
    """A record that passed every check, ready for the insert."""

    index: int
    new: NewUsageRecord


def _public(
    record: NewUsageRecord | StoredRecord, record_id: int, source: str
) -> UsageRecordPublic:
    return UsageRecordPublic(
        id=record_id,
        kind="agents" if record.kind == "agents" else "minutes",
        call_id=record.call_id,
        minutes=record.minutes,
        agents=record.agents,
        timestamp=record.occurred_at,
        subscription_id=record.subscription_id,
        period_start=record.period_start,
        source="service" if source == "service" else "user",
    )


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


class _Ingestion:
    """One request's records, from parsing to alerts."""

    def __init__(
        self,
        session: StatementTarget,
        principal: Principal,
        now: datetime,
        alert_thresholds: Sequence[int],
        *,
        public_records: bool,
    ) -> None:
        self.session = session
        self.public_records = public_records
        # Each subscription's period found last: a batch's records mostly share one.
        self.periods: dict[int, UsagePeriod] = {}
        self.principal = principal
        self.source = "service" if principal.is_service else "user"
        self.now = now
        self.alert_thresholds = alert_thresholds
        self.terms_by_subscription: dict[int, tuple[int, SubscriptionTerms]] = {}

    async def run(self, records: Sequence[UsageRecordCreate | AppError]) -> list[RecordOutcome]:
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        accepted = await self._accept(records, outcomes)
        if accepted:
            changes = await self._store(accepted, outcomes)
            await self._raise_alerts(changes)
        answered = [outcome for outcome in outcomes if outcome is not None]
        assert len(answered) == len(records), "every record is answered"
        return answered

    async def _accept(
        self,
        records: Sequence[UsageRecordCreate | AppError],
        outcomes: list[RecordOutcome | None],
    ) -> list[_Accepted]:
        checked: list[tuple[int, UsageRecordCreate, AccountReference]] = []
        # A batch names few customers, each many times: each is resolved once.
        accounts: dict[str | None, AccountReference | AppError] = {}
        for index, record in enumerate(records):
            if isinstance(record, AppError):
                outcomes[index] = _failed(record)
                continue
            try:
                account = accounts.get(record.customer_id)
                if account is None:
                    try:
                        account = account_reference(self.principal, record.customer_id)
                    except AppError as error:
                        account = error
                    accounts[record.customer_id] = account
                if isinstance(account, AppError):
                    raise account
                _check_measurement(record, self.now)
            except AppError as error:
                outcomes[index] = _failed(error, record.call_id)
                continue
            checked.append((index, record, account))
        if not checked:
            return []

        customers = await repository.load_subscriptions_for_ingestion(
            self.session, sorted({account.dashboard_user_id for _, _, account in checked})
        )
        for loaded in customers.values():
            for terms in loaded.subscriptions:
                self.terms_by_subscription[terms.subscription_id] = (loaded.customer_id, terms)

        accepted: list[_Accepted] = []
        for index, record, account in checked:
            customer = customers.get(account.dashboard_user_id)
            try:
                if customer is None:
                    # No account yet: a user without one has no subscription either.
                    raise CustomerNotFound() if account.by_service else NoActiveSubscription()
                occurred_at = record.timestamp or self.now
                placement = place_record(
                    customer.subscriptions, occurred_at, self.now, periods=self.periods
                )
            except AppError as error:
                outcomes[index] = _failed(error, record.call_id)
                continue
            terms = placement.terms
            minutes = record.minutes_used
            if record.duration_seconds is not None:
                minutes = minutes_for_call(record.duration_seconds, terms.call_rounding)
            new = NewUsageRecord(
                customer_id=customer.customer_id,
                subscription_id=terms.subscription_id,
                kind="agents" if record.agents_active is not None else "minutes",
                call_id=record.call_id,
                minutes=minutes,
                agents=record.agents_active,
                occurred_at=occurred_at,
                period_start=placement.period.start,
                period_end=placement.period.end,
                fingerprint=request_fingerprint(record),
            )
            accepted.append(_Accepted(index=index, new=new))
        # One order for every request: calls are claimed, and wait for each other, in it.
        accepted.sort(key=lambda item: (item.new.customer_id, item.new.call_id or "", item.index))
        return accepted

    async def _store(
        self, accepted: list[_Accepted], outcomes: list[RecordOutcome | None]
    ) -> list[TotalsChange]:
        inserted, changes = await repository.insert_records(
            self.session, [item.new for item in accepted], source=self.source, now=self.now
        )
        # Which of the records were inserted: by call and fingerprint (identical agents
        # readings are interchangeable, so any of their ids will do).
        inserted_ids: dict[tuple[int, str | None, str], list[int]] = {}
        for row in inserted:
            inserted_ids.setdefault((row.customer_id, row.call_id, row.fingerprint), []).append(
                row.id
            )
        already_recorded: list[_Accepted] = []
        for item in accepted:
            ids = inserted_ids.get((item.new.customer_id, item.new.call_id, item.new.fingerprint))
            if ids:
                record_id = ids.pop(0)
                outcomes[item.index] = RecordOutcome(
                    status="created",
                    call_id=item.new.call_id,
                    record_id=record_id,
                    record=self._public(item.new, record_id, self.source),
                )
            else:
                already_recorded.append(item)
        if already_recorded:
            changes += await self._resolve_recorded_calls(already_recorded, outcomes)
        return changes

    async def _resolve_recorded_calls(
        self, items: list[_Accepted], outcomes: list[RecordOutcome | None]
    ) -> list[TotalsChange]:
        """Duplicates, conflicts and replacements of calls recorded before (by an earlier
        request, or earlier in this batch)."""
        keys = sorted({(item.new.customer_id, item.new.call_id or "") for item in items})
        # Locked only when this request may replace them (a service token).
        stored = await repository.find_records_by_call(
            self.session, keys, for_update=self.source == "service"
        )
        claims: list[int] = []
        replacements: list[RecordReplacement] = []
        periods: dict[tuple[int, datetime], PeriodDelta] = {}
        days: dict[tuple[int, date], DayDelta] = {}
        for item in items:
            new = item.new
            key = (new.customer_id, new.call_id or "")
            current = stored[key]
            if current.fingerprint == new.fingerprint:
                if self.source == "service" and current.source == "user":
                    claims.append(current.id)
                    current = stored[key] = replace(current, source="service")
                outcomes[item.index] = RecordOutcome(
                    status="duplicate",
                    call_id=new.call_id,
                    record_id=current.id,
                    record=self._public(current, current.id, current.source),
                )
            elif self.source == "service" and current.source == "user":
                replacements.append(self._replacement(current, new))
                old_end = self._period_end(current)
                self._add_deltas(periods, days, current, sign=-1, period_end=old_end)
                self._add_deltas(periods, days, new, sign=1, period_end=new.period_end)
                # What a later copy in this batch is compared with.
                stored[key] = replace(
                    current,
                    subscription_id=new.subscription_id,
                    minutes=new.minutes,
                    occurred_at=new.occurred_at,
                    period_start=new.period_start,
                    source="service",
                    fingerprint=new.fingerprint,
                )
                outcomes[item.index] = RecordOutcome(
                    status="created",
                    call_id=new.call_id,
                    record_id=current.id,
                    record=self._public(new, current.id, "service"),
                    replaced=True,
                )
            else:
                outcomes[item.index] = _failed(UsageConflict(), new.call_id)
        if claims:
            await repository.claim_records(self.session, claims)
        if not replacements:
            return []
        await repository.replace_records(self.session, replacements)
        return await repository.adjust_totals(
            self.session,
            sorted(periods.values(), key=lambda delta: (delta.subscription_id, delta.period_start)),
            sorted(days.values(), key=lambda delta: (delta.subscription_id, delta.day)),
        )

    def _public(
        self, record: NewUsageRecord | StoredRecord, record_id: int, source: str
    ) -> UsageRecordPublic | None:
        return _public(record, record_id, source) if self.public_records else None

    def _replacement(self, current: StoredRecord, new: NewUsageRecord) -> RecordReplacement:
        assert new.minutes is not None  # only calls carry a call_id
        replaced_payload = {
            "minutes": _canonical(current.minutes),
            "timestamp": current.occurred_at.isoformat(),
            "subscription_id": current.subscription_id,
            "period_start": current.period_start.isoformat(),
            "source": current.source,
            "request_fingerprint": current.fingerprint,
            "recorded_at": current.created_at.isoformat(),
            "replaced_at": self.now.isoformat(),
        }
        return RecordReplacement(
            record_id=current.id,
            subscription_id=new.subscription_id,
            minutes=new.minutes,
            occurred_at=new.occurred_at,
            period_start=new.period_start,
            fingerprint=new.fingerprint,
            replaced_payload=json.dumps(replaced_payload, sort_keys=True),
        )

    def _add_deltas(
        self,
        periods: dict[tuple[int, datetime], PeriodDelta],
        days: dict[tuple[int, date], DayDelta],
        record: NewUsageRecord | StoredRecord,
        *,
        sign: int,
        period_end: datetime,
    ) -> None:
        minutes = (record.minutes or Decimal(0)) * sign
        period_key = (record.subscription_id, record.period_start)
        previous = periods.get(period_key)
        if previous is None:
            periods[period_key] = PeriodDelta(*period_key, period_end, minutes, sign)
        else:
            periods[period_key] = replace(
                previous, minutes=previous.minutes + minutes, records=previous.records + sign
            )
        day_key = (record.subscription_id, _utc_day(record.occurred_at))
        day = days.get(day_key)
        days[day_key] = DayDelta(*day_key, minutes + (day.minutes if day else 0))

    def _period_end(self, record: StoredRecord) -> datetime:
        # A record's subscription is always one of its customer's, loaded in _accept.
        _, terms = self.terms_by_subscription[record.subscription_id]
        return usage_period_at(terms.anchor, terms.anchor_changes, record.occurred_at).end

    async def _raise_alerts(self, changes: list[TotalsChange]) -> None:
        usage_changes = []
        for change in changes:
            customer_id, terms = self.terms_by_subscription[change.subscription_id]
            usage_changes.append(
                alerts_service.UsageChange(
                    customer_id=customer_id,
                    subscription_id=change.subscription_id,
                    period_start=change.period_start,
                    minutes_before=change.minutes_before,
                    minutes_after=change.minutes_after,
                    minutes_included=terms.minutes_included,
                    peak_before=change.peak_before,
                    peak_after=change.peak_after,
                    agents_allowed=terms.agents_allowed,
                    bills_overage=not began_in_trial(change.period_start, terms.trial_end),
                )
            )
        await alerts_service.raise_usage_alerts(
            self.session, changes=usage_changes, thresholds=self.alert_thresholds, now=self.now
        )


async def record_usage(
    session: StatementTarget,
    *,
    principal: Principal,
    record: UsageRecordCreate,
    now: datetime,
    alert_thresholds: Sequence[int],
) -> RecordOutcome:
    """Record one call or agents reading; raises the error a rejected record has."""
    [outcome] = await _Ingestion(
        session, principal, now, alert_thresholds, public_records=True
    ).run([record])
    if outcome.error is not None:
        raise outcome.error
    return outcome


def _parse(raw: Any) -> UsageRecordCreate | AppError:
    try:
        return _record_adapter.validate_python(raw)
    except ValidationError as error:
        details = [
            {
                "field": ".".join(str(part) for part in item["loc"]),
                "message": item["msg"],
                "type": item["type"],
            }
            for item in error.errors(include_url=False, include_input=False)
        ]
        return InvalidUsageRecord(details=details)


async def record_usage_batch(
    session: StatementTarget,
    *,
    principal: Principal,
    records: Sequence[Any],
    now: datetime,
    alert_thresholds: Sequence[int],
) -> list[RecordOutcome]:
    """Record up to 1,000 records; each is answered on its own, in order, and a rejected one
    does not reject the others."""
    # The records that parsed arrive parsed (UsageBatchRequest); the others are parsed again,
    # on their own, for their errors.
    parsed = [
        # `type() is`: isinstance on a pydantic model goes through ABCMeta, a thousand times.
        record if type(record) is UsageRecordCreate else _parse(record)
        for record in records
    ]
    return await _Ingestion(session, principal, now, alert_thresholds, public_records=False).run(
        parsed
    )
