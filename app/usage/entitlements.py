"""GET entitlements/: what the customer may use now, asked by the dialer before every call.

Whether the next call is allowed, by the subscription's status:
- `active`: allowed, also past 100% of the included minutes (those calls are overage);
- `trialing`: allowed until the included minutes are used up (a trial has no overage);
- `past_due` in dunning (a failed payment the service retries): allowed until its retries
  and grace are used up and the dunning sweeper suspends it (`payment_overdue_at`: reason
  `payment_overdue`); `past_due` otherwise: allowed during the grace period
  (`grace_period_ends_at`), suspended after it;
- `unpaid`, `canceled`, `incomplete_expired`, `paused`: suspended;
- suspended by an operator (or by dunning), whatever the status: suspended;
- `pending`, `incomplete` (the first payment is not through), or no subscription: not
  allowed, not suspended.
One indexed read answers it: the live subscription joined with its plan, the sums of its
add-ons and the current period's counters.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.core.accounts import AccountReference
from app.core.db import StatementTarget
from app.core.periods import usage_period_containing
from app.subscriptions.schemas import PlanSummary
from app.usage import read_models
from app.usage.errors import CustomerNotFound
from app.usage.read_models import AccountUsageState
from app.usage.schemas import EntitlementAddOn, EntitlementLimits, EntitlementReason, Entitlements

_SUSPENDED_STATUSES: dict[str, EntitlementReason] = {
    "unpaid": "unpaid",
    "canceled": "canceled",
    "incomplete_expired": "incomplete_expired",
    "paused": "paused",
}
_NOT_STARTED_STATUSES = frozenset({"pending", "incomplete"})


@dataclass(frozen=True, slots=True)
class CallDecision:
    call_allowed: bool
    suspended: bool
    reason: EntitlementReason | None


ALLOWED = CallDecision(call_allowed=True, suspended=False, reason=None)


def decide_call(
    status: str,
    *,
    minutes_used: Decimal,
    minutes_included: int,
    grace_period_ends_at: datetime | None,
    now: datetime,
    suspended_at: datetime | None = None,
    in_dunning: bool = False,
    payment_overdue_at: datetime | None = None,
) -> CallDecision:
    """Whether the next call may be placed (the rules in this module's docstring)."""
    if suspended_at is not None and status not in _NOT_STARTED_STATUSES:
        return CallDecision(call_allowed=False, suspended=True, reason="suspended")
    if status in _NOT_STARTED_STATUSES:
        return CallDecision(call_allowed=False, suspended=False, reason="subscription_not_started")
    if status in _SUSPENDED_STATUSES:
        return CallDecision(call_allowed=False, suspended=True, reason=_SUSPENDED_STATUSES[status])
    if payment_overdue_at is not None:
        return CallDecision(call_allowed=False, suspended=True, reason="payment_overdue")
    if in_dunning:
        return ALLOWED
    if status == "past_due" and grace_period_ends_at is not None and now >= grace_period_ends_at:
        return CallDecision(call_allowed=False, suspended=True, reason="grace_period_expired")
    if status == "trialing" and minutes_used >= minutes_included:
        return CallDecision(call_allowed=False, suspended=False, reason="trial_minutes_exhausted")
    return ALLOWED


def _features(state: AccountUsageState) -> dict[str, bool]:
    # The plan's flags, and any an add-on switches on.
    features = {name: value is True for name, value in state.features.items()}
    for line in state.add_ons:
        for name, value in (line.get("features") or {}).items():
            if value is True:
                features[name] = True
    return features


async def get_entitlements(
    session: StatementTarget, *, account: AccountReference, now: datetime
) -> Entitlements:
    state = await read_models.get_account_usage_state(
        session, dashboard_user_id=account.dashboard_user_id, now=now
    )
    if state is None and account.by_service:
        raise CustomerNotFound()
    if state is None or state.subscription_id is None or state.status is None:
        return Entitlements(
            customer_id=account.dashboard_user_id,
            subscription_id=None,
            status=None,
            plan=None,
            period_start=None,
            period_end=None,
            limits=EntitlementLimits(included_minutes=0, agents_allowed=0),
            minutes_used=Decimal(0),
            minutes_remaining=Decimal(0),
            peak_agents=0,
            features={},
            add_ons=[],
            call_allowed=False,
            suspended=False,
            reason="no_subscription",
        )
    period = usage_period_containing(state.anchor, now) if state.anchor else None
    minutes_used, peak_agents = Decimal(0), 0
    if period is not None and state.totals_period_start == period.start:
        minutes_used, peak_agents = state.minutes_used, state.peak_agents
    decision = decide_call(
        state.status,
        minutes_used=minutes_used,
        minutes_included=state.minutes_included,
        grace_period_ends_at=state.grace_period_ends_at,
        now=now,
        suspended_at=state.suspended_at,
        in_dunning=state.dunning_invoice_id is not None,
        payment_overdue_at=state.payment_overdue_at,
    )
    in_grace = (
        state.dunning_invoice_id is not None
        and state.payment_overdue_at is None
        and state.status == "past_due"
    )
    assert state.plan_id is not None and state.plan_slug and state.plan_name
    return Entitlements(
        customer_id=account.dashboard_user_id,
        subscription_id=state.subscription_id,
        status=state.status,
        plan=PlanSummary(id=state.plan_id, slug=state.plan_slug, name=state.plan_name),
        period_start=period.start if period else None,
        period_end=period.end if period else None,
        limits=EntitlementLimits(
            included_minutes=state.minutes_included, agents_allowed=state.agents_allowed
        ),
        minutes_used=minutes_used,
        minutes_remaining=max(state.minutes_included - minutes_used, Decimal(0)),
        peak_agents=peak_agents,
        features=_features(state),
        add_ons=[EntitlementAddOn.model_validate(line) for line in state.add_ons],
        call_allowed=decision.call_allowed,
        suspended=decision.suspended,
        reason=decision.reason,
        in_grace=in_grace,
        grace_period_end=state.grace_period_ends_at if in_grace else None,
        next_payment_retry=state.next_payment_retry_at if in_grace else None,
    )
