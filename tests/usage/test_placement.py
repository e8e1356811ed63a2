from datetime import timedelta

import pytest

from app.usage.errors import NoActiveSubscription, UsageTooLate
from app.usage.placement import SubscriptionTerms, place_record
from tests.usage.helpers import at


def terms(
    subscription_id: int = 1,
    *,
    anchor: str = "2026-08-01T00:00",
    starts_at: str = "2026-08-01T00:00",
    ends_at: str | None = None,
    status: str = "active",
) -> SubscriptionTerms:
    return SubscriptionTerms(
        subscription_id=subscription_id,
        status=status,
        anchor=at(anchor),
        starts_at=at(starts_at),
        ends_at=at(ends_at) if ends_at else None,
        trial_end=None,
        call_rounding="per_second",
        minutes_included=100,
        agents_allowed=5,
    )


NOW = at("2026-11-25T12:00")


def test_a_record_belongs_to_the_period_holding_its_timestamp() -> None:
    placement = place_record([terms()], at("2026-10-20T08:00"), NOW)
    assert (placement.period.start, placement.period.end) == (
        at("2026-10-01T00:00"),
        at("2026-11-01T00:00"),
    )


def test_records_are_accepted_until_35_days_after_their_period_closed() -> None:
    closed = at("2026-10-01T00:00")
    place_record([terms()], at("2026-09-15T00:00"), closed + timedelta(days=35))
    with pytest.raises(UsageTooLate):
        place_record([terms()], at("2026-09-15T00:00"), closed + timedelta(days=35, microseconds=1))


def test_a_canceled_subscription_takes_records_until_35_days_after_it_ended() -> None:
    ended = terms(ends_at="2026-10-10T00:00", status="canceled")
    # The period runs to November 1st, but the subscription ended on October 10th.
    placement = place_record([ended], at("2026-10-09T00:00"), at("2026-11-14T00:00"))
    assert placement.terms.subscription_id == 1
    with pytest.raises(UsageTooLate):
        place_record([ended], at("2026-10-09T00:00"), at("2026-11-14T00:00:01"))
    with pytest.raises(NoActiveSubscription):
        place_record([ended], at("2026-10-10T00:00"), at("2026-10-12T00:00"))


def test_a_timestamp_before_any_subscription_is_no_active_subscription() -> None:
    with pytest.raises(NoActiveSubscription):
        place_record([terms()], at("2026-07-31T23:59"), NOW)
    with pytest.raises(NoActiveSubscription):
        place_record([], NOW, NOW)


def test_the_subscription_holding_the_timestamp_is_chosen() -> None:
    old = terms(1, starts_at="2026-01-01T00:00", ends_at="2026-09-01T00:00", status="canceled")
    new = terms(2, anchor="2026-09-05T00:00", starts_at="2026-09-05T00:00")
    assert place_record([old, new], at("2026-08-30T00:00"), at("2026-09-06T00:00")).terms == old
    assert place_record([old, new], at("2026-09-06T00:00"), at("2026-09-06T00:00")).terms == new
    with pytest.raises(NoActiveSubscription):
        place_record([old, new], at("2026-09-02T00:00"), at("2026-09-06T00:00"))


def test_usage_during_a_trial_falls_in_the_period_before_the_anchor() -> None:
    # Stripe anchors a trial's subscription at the trial's end.
    trial = terms(anchor="2026-11-29T00:00", starts_at="2026-11-15T00:00", status="trialing")
    placement = place_record([trial], at("2026-11-20T00:00"), NOW)
    assert placement.period.start == at("2026-10-29T00:00")
    assert placement.period.end == at("2026-11-29T00:00")
