"""Overage of one usage period: what is owed beyond the included minutes and agents.

Pure functions, no database and no Stripe, so every rule here is tested on hand-computed
cases (tests/usage/test_overage.py):

- Minutes beyond the included minutes cost the plan's per-minute rate; peak agents beyond the
  agent limit cost the per-agent rate. Add-ons raise both limits by their `extra_minutes` and
  `extra_agents` times their quantity.
- The plan in force at the period's end sets the limits and rates for the whole period: a
  customer who upgraded mid-period gets the bigger plan's allowance and rates for all of it
  (the caller passes the plan from the subscription's plan history, at the period's end, not
  at whatever later moment the close runs).
- Add-ons follow the add-on history (`overage_terms_for_period`): an add-on's extra minutes
  count for the share of the period it was held (quantity x extra minutes x held time /
  period length, summed over the add-ons and rounded down once to whole minutes: no minute
  is given that was not held), so one bought an hour before the end adds an hour's worth,
  and one removed an hour after the end covered the whole period. Its extra agents count
  when it is held at the period's end: agents are a peak, not a sum, and a seat held when
  the period is billed covers it.
- Limits are monthly for both billing cycles: a yearly plan's `included_minutes` are per
  monthly usage period, never multiplied by twelve.
- Rates are `Decimal` minor units (2.5 = two and a half cents a minute). Each line (minutes,
  agents) is rounded once, half up, to whole minor units (`round_to_minor_units`); the total
  is the sum of the rounded lines, which is what the invoice shows as two items.
- A period that began during a trial owes nothing: a trial is blocked at its included minutes
  rather than billed (entitlements), and whatever slipped through is not charged.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

from app.core.money import round_to_minor_units
from app.models import AddOn, SubscriptionPlan

ZERO_MINUTES = Decimal(0)


@dataclass(frozen=True, slots=True)
class OverageTerms:
    """The limits and rates one period is billed by."""

    included_minutes: int
    agent_limit: int
    # Minor units of `currency` per minute, and per agent above the limit per period.
    rate_per_minute: Decimal
    rate_per_agent: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class OverageAmounts:
    """Quantities over the limits and their rounded amounts, in minor units."""

    minutes_over: Decimal
    agents_over: int
    minutes_amount: int
    agents_amount: int
    currency: str

    @property
    def amount(self) -> int:
        return self.minutes_amount + self.agents_amount

    @property
    def bills_nothing(self) -> bool:
        # Quantities alone do not make a charge: a late tenth of a minute that leaves the
        # rounded amount where it was is picked up by the next recomputation, not lost.
        return self.minutes_amount == 0 and self.agents_amount == 0


def overage_terms(
    plan: SubscriptionPlan, add_ons: Iterable[tuple[AddOn, int]] = ()
) -> OverageTerms:
    """The terms of `plan` with these add-ons (each with its quantity) on top."""
    extra_minutes = 0
    extra_agents = 0
    for add_on, quantity in add_ons:
        extra_minutes += add_on.extra_minutes * quantity
        extra_agents += add_on.extra_agents * quantity
    return OverageTerms(
        included_minutes=plan.included_minutes + extra_minutes,
        agent_limit=plan.max_agents + extra_agents,
        rate_per_minute=Decimal(plan.overage_rate_per_minute),
        rate_per_agent=Decimal(plan.overage_rate_per_agent),
        currency=plan.currency,
    )


@dataclass(frozen=True, slots=True)
class AddOnChange:
    """An add-on's quantity changed at `effective_at` (from the subscription's history)."""

    effective_at: datetime
    add_on_id: int
    from_quantity: int
    to_quantity: int


def _quantity_at(
    add_on_id: int, current: int, changes: Sequence[AddOnChange], moment: datetime
) -> int:
    """The add-on's quantity from `moment` on: the last change at or before it, else the
    quantity before the first change after it, else the quantity held now."""
    own = [change for change in changes if change.add_on_id == add_on_id]
    before = [change for change in own if change.effective_at <= moment]
    if before:
        return before[-1].to_quantity
    return own[0].from_quantity if own else current


def overage_terms_for_period(
    plan: SubscriptionPlan,
    add_ons: Mapping[int, AddOn],
    current: Mapping[int, int],
    changes: Sequence[AddOnChange],
    start: datetime,
    end: datetime,
) -> OverageTerms:
    """The terms of the period [start, end) with the add-ons as the history says they were
    held (`changes` oldest first; `current`: quantities now, by add-on id; `add_ons`: every
    add-on named by either). See the module docstring for the rule."""
    length = Decimal((end - start).total_seconds())
    held_minutes = Decimal(0)
    extra_agents = 0
    for add_on_id, add_on in add_ons.items():
        now_held = current.get(add_on_id, 0)
        cuts = [
            c.effective_at
            for c in changes
            if c.add_on_id == add_on_id and start < c.effective_at < end
        ]
        bounds = [start, *cuts, end]
        for span_start, span_end in pairwise(bounds):
            quantity = _quantity_at(add_on_id, now_held, changes, span_start)
            seconds = Decimal((span_end - span_start).total_seconds())
            held_minutes += quantity * add_on.extra_minutes * seconds
        # Held at the end: the quantity just before it (a change at the end is the next
        # period's).
        own = [c for c in changes if c.add_on_id == add_on_id]
        at_end = [c for c in own if c.effective_at < end]
        if at_end:
            quantity_at_end = at_end[-1].to_quantity
        else:
            quantity_at_end = own[0].from_quantity if own else now_held
        extra_agents += quantity_at_end * add_on.extra_agents
    extra_minutes = int(held_minutes / length) if length > 0 else 0
    return OverageTerms(
        included_minutes=plan.included_minutes + extra_minutes,
        agent_limit=plan.max_agents + extra_agents,
        rate_per_minute=Decimal(plan.overage_rate_per_minute),
        rate_per_agent=Decimal(plan.overage_rate_per_agent),
        currency=plan.currency,
    )


def began_in_trial(period_start: datetime, trial_end: datetime | None) -> bool:
    """Whether a usage period is a trial period: it started before the trial ended.

    "Started", not "ended": a trial ended early moves the billing anchor to that moment, and
    the period that was running is closed there, with its trial usage in it.
    """
    return trial_end is not None and period_start < trial_end


def compute_overage(
    terms: OverageTerms, *, minutes_used: Decimal, peak_agents: int, in_trial: bool = False
) -> OverageAmounts:
    """The overage of a period with this usage under these terms (zero during a trial)."""
    if in_trial:
        return OverageAmounts(ZERO_MINUTES, 0, 0, 0, terms.currency)
    minutes_over = max(Decimal(minutes_used) - terms.included_minutes, ZERO_MINUTES)
    agents_over = max(peak_agents - terms.agent_limit, 0)
    return OverageAmounts(
        minutes_over=minutes_over,
        agents_over=agents_over,
        minutes_amount=round_to_minor_units(minutes_over * terms.rate_per_minute),
        agents_amount=round_to_minor_units(terms.rate_per_agent * agents_over),
        currency=terms.currency,
    )


def sum_charged(charged: Iterable[OverageAmounts], currency: str) -> OverageAmounts:
    """What the charges already made for a period add up to."""
    total = OverageAmounts(ZERO_MINUTES, 0, 0, 0, currency)
    for charge in charged:
        total = OverageAmounts(
            minutes_over=total.minutes_over + charge.minutes_over,
            agents_over=total.agents_over + charge.agents_over,
            minutes_amount=total.minutes_amount + charge.minutes_amount,
            agents_amount=total.agents_amount + charge.agents_amount,
            currency=currency,
        )
    return total


def adjustment(implied: OverageAmounts, charged: OverageAmounts) -> OverageAmounts:
    """What a period still owes (or is owed, when negative): its overage as the totals imply
    it now, less what was charged.

    The difference of the rounded amounts, not a rounding of the difference: the charges of a
    period then add up to exactly one rounding of its final usage, however many late records
    arrived, so splitting a period into adjustments never gains or loses a cent. A negative
    line is a credit (a record replaced by a smaller one after the period was billed).
    """
    return OverageAmounts(
        minutes_over=implied.minutes_over - charged.minutes_over,
        agents_over=implied.agents_over - charged.agents_over,
        minutes_amount=implied.minutes_amount - charged.minutes_amount,
        agents_amount=implied.agents_amount - charged.agents_amount,
        currency=implied.currency,
    )
