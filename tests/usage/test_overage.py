"""Overage to the cent, on cases computed by hand (rates are minor units: 2.5 = 2.5 cents)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.models import AddOn, SubscriptionPlan
from app.usage.overage import (
    AddOnChange,
    OverageAmounts,
    adjustment,
    began_in_trial,
    compute_overage,
    overage_terms,
    overage_terms_for_period,
    sum_charged,
)


def _plan(**overrides: Any) -> SubscriptionPlan:
    values: dict[str, Any] = {
        "slug": "growth",
        "currency": "usd",
        "included_minutes": 2_000,
        "max_agents": 10,
        "overage_rate_per_minute": Decimal("2.5"),
        "overage_rate_per_agent": Decimal("1500"),
        **overrides,
    }
    return SubscriptionPlan(**values)


def _add_on(extra_minutes: int = 0, extra_agents: int = 0) -> AddOn:
    return AddOn(slug="extra", extra_minutes=extra_minutes, extra_agents=extra_agents)


def test_minutes_and_agents_over_the_plan() -> None:
    # 120.5 min x 2.5 = 301.25 -> 301; 2 agents x 1500 = 3000.
    amounts = compute_overage(
        overage_terms(_plan()), minutes_used=Decimal("2120.5"), peak_agents=12
    )

    assert amounts == OverageAmounts(Decimal("120.5"), 2, 301, 3_000, "usd")
    assert amounts.amount == 3_301


def test_usage_within_the_limits_costs_nothing() -> None:
    amounts = compute_overage(overage_terms(_plan()), minutes_used=Decimal(2_000), peak_agents=10)

    assert amounts.amount == 0 and amounts.bills_nothing
    assert (amounts.minutes_over, amounts.agents_over) == (Decimal(0), 0)


def test_each_line_is_rounded_once_half_up() -> None:
    terms = overage_terms(_plan())

    # 0.2 min x 2.5 = 0.5 -> 1 (half up); 0.1 min x 2.5 = 0.25 -> 0.
    assert compute_overage(terms, minutes_used=Decimal("2000.2"), peak_agents=0).amount == 1
    assert compute_overage(terms, minutes_used=Decimal("2000.1"), peak_agents=0).amount == 0


def test_add_ons_raise_both_limits_by_their_quantity() -> None:
    # Included 2,000 + 2 x 1,000 = 4,000 minutes; agents 10 + 1 x 5 = 15.
    # 100.75 min x 2.5 = 251.875 -> 252; 1 agent x 1500 = 1500.
    terms = overage_terms(
        _plan(), [(_add_on(extra_minutes=1_000), 2), (_add_on(extra_agents=5), 1)]
    )

    amounts = compute_overage(terms, minutes_used=Decimal("4100.75"), peak_agents=16)

    assert (terms.included_minutes, terms.agent_limit) == (4_000, 15)
    assert (amounts.minutes_amount, amounts.agents_amount, amounts.amount) == (252, 1_500, 1_752)


def test_fractional_rates_are_exact_until_the_one_rounding() -> None:
    # 333.3333 min x 1.234567 = 411.5222921811 -> 412 (half up at .52);
    # 3 agents x 999.5 = 2998.5 -> 2999.
    terms = overage_terms(
        _plan(
            included_minutes=1_000,
            max_agents=2,
            overage_rate_per_minute=Decimal("1.234567"),
            overage_rate_per_agent=Decimal("999.5"),
        )
    )

    amounts = compute_overage(terms, minutes_used=Decimal("1333.3333"), peak_agents=5)

    assert (amounts.minutes_amount, amounts.agents_amount, amounts.amount) == (412, 2_999, 3_411)


def test_a_mid_period_upgrade_bills_the_whole_period_at_the_plan_in_force_at_close() -> None:
    starter = _plan(included_minutes=1_000, overage_rate_per_minute=Decimal(4))
    professional = _plan(included_minutes=5_000, overage_rate_per_minute=Decimal(2))
    used = Decimal(5_200)

    # Under the starter plan the period would owe 4,200 x 4 = 16,800; the customer upgraded
    # before the close, so the professional plan prices all of it: 200 x 2 = 400.
    assert compute_overage(overage_terms(starter), minutes_used=used, peak_agents=3).amount == (
        16_800
    )
    assert compute_overage(
        overage_terms(professional), minutes_used=used, peak_agents=3
    ).amount == (400)


def test_a_yearly_plan_has_monthly_allowances() -> None:
    # A yearly subscription's monthly period gets the plan's included minutes once, not x12:
    # 2,500 - 2,000 = 500 min x 2.5 = 1,250.
    yearly = _plan(yearly_price=99_000)

    amounts = compute_overage(overage_terms(yearly), minutes_used=Decimal(2_500), peak_agents=10)

    assert amounts.amount == 1_250


def test_no_overage_during_a_trial() -> None:
    trial_end = datetime(2026, 12, 9, tzinfo=UTC)

    assert began_in_trial(datetime(2026, 11, 25, tzinfo=UTC), trial_end)
    assert not began_in_trial(trial_end, trial_end)
    assert not began_in_trial(trial_end, None)
    amounts = compute_overage(
        overage_terms(_plan()), minutes_used=Decimal(9_000), peak_agents=40, in_trial=True
    )
    assert amounts.bills_nothing and amounts.amount == 0


def test_an_adjustment_bills_the_difference_of_rounded_totals() -> None:
    terms = overage_terms(_plan())
    # Billed at the close: 0.2 min over -> 0.5 -> 1.
    first = compute_overage(terms, minutes_used=Decimal("2000.2"), peak_agents=0)
    # A late 0.2 min: 0.4 min over -> 1.0 -> 1 in all, so nothing more is owed (rounding the
    # late part alone would have billed 0.5 -> 1 again: 2 cents for 1 cent of usage).
    late = compute_overage(terms, minutes_used=Decimal("2000.4"), peak_agents=0)
    assert adjustment(late, sum_charged([first], "usd")).bills_nothing

    # Later, 10.3 more minutes and a 12th agent: 10.7 min over -> 26.75 -> 27, less the 1
    # charged = 26; 2 agents x 1500 = 3000, none charged yet.
    final = compute_overage(terms, minutes_used=Decimal("2010.7"), peak_agents=12)
    owed = adjustment(final, sum_charged([first], "usd"))
    assert (owed.minutes_over, owed.agents_over) == (Decimal("10.5"), 2)
    assert (owed.minutes_amount, owed.agents_amount, owed.amount) == (26, 3_000, 3_026)


def test_usage_lowered_after_billing_is_credited() -> None:
    # A user's 120.5 min replaced by the telephony backend's 100.5 after the close: 301
    # charged, 251 owed (100.5 x 2.5 = 251.25 -> 251), a credit of 50.
    terms = overage_terms(_plan())
    charged = compute_overage(terms, minutes_used=Decimal("2120.5"), peak_agents=0)
    now = compute_overage(terms, minutes_used=Decimal("2100.5"), peak_agents=0)

    assert adjustment(now, sum_charged([charged], "usd")).amount == -50


def test_add_ons_count_their_minutes_for_the_time_held_and_their_agents_if_held_at_the_end() -> (
    None
):
    start = datetime(2026, 4, 1, tzinfo=UTC)
    end = datetime(2026, 5, 1, tzinfo=UTC)  # 30 days
    minutes = _add_on(extra_minutes=600)
    seats = _add_on(extra_agents=2)
    history = [
        # 2 x 600 minutes from day 10 (the quantity was 0 before), 1 from day 25.
        AddOnChange(datetime(2026, 4, 11, tzinfo=UTC), 1, 0, 2),
        AddOnChange(datetime(2026, 4, 26, tzinfo=UTC), 1, 2, 1),
        # 3 seats held until day 20, then none; added again on the period's last moment.
        AddOnChange(datetime(2026, 4, 21, tzinfo=UTC), 2, 3, 0),
        # A change exactly at the end is the next period's.
        AddOnChange(end, 2, 0, 5),
    ]

    terms = overage_terms_for_period(
        _plan(), {1: minutes, 2: seats}, {1: 1, 2: 5}, history, start, end
    )

    # 1,200 x 15/30 + 600 x 5/30 = 600 + 100 = 700 minutes; no seats held at the end.
    assert (terms.included_minutes, terms.agent_limit) == (2_700, 10)
    # Without any history the add-ons held now count in full.
    untouched = overage_terms_for_period(
        _plan(), {1: minutes, 2: seats}, {1: 1, 2: 3}, [], start, end
    )
    assert (untouched.included_minutes, untouched.agent_limit) == (2_600, 16)
