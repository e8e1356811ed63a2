from decimal import Decimal

from app.alerts.service import UsageChange, alerts_crossed
from tests.factories import PERIOD_START


def change(
    minutes: tuple[str, str] = ("0", "0"),
    peak: tuple[int, int] = (0, 0),
    *,
    included: int = 100,
    allowed: int = 10,
    bills_overage: bool = True,
) -> UsageChange:
    return UsageChange(
        customer_id=1,
        subscription_id=1,
        period_start=PERIOD_START,
        minutes_before=Decimal(minutes[0]),
        minutes_after=Decimal(minutes[1]),
        minutes_included=included,
        peak_before=peak[0],
        peak_after=peak[1],
        agents_allowed=allowed,
        bills_overage=bills_overage,
    )


def crossed(
    usage_change: UsageChange, thresholds: list[int] | None = None
) -> list[tuple[str, str, int]]:
    return [
        (alert["kind"], alert["resource"], alert["threshold"])
        for alert in alerts_crossed(usage_change, thresholds or [80, 100])
    ]


def test_reaching_a_threshold_exactly_crosses_it() -> None:
    assert crossed(change(("79.9999", "80"))) == [("usage_threshold", "minutes", 80)]
    assert crossed(change(("80", "99"))) == []


def test_one_change_can_cross_several_thresholds_and_start_overage() -> None:
    assert crossed(change(("10", "100.0001"))) == [
        ("usage_threshold", "minutes", 80),
        ("usage_threshold", "minutes", 100),
        ("overage", "", 0),
    ]


def test_reaching_100_percent_is_not_yet_overage() -> None:
    assert crossed(change(("99", "100"))) == [("usage_threshold", "minutes", 100)]
    assert crossed(change(("100", "100.5"))) == [("overage", "", 0)]


def test_agents_thresholds_are_on_the_peak() -> None:
    assert crossed(change(peak=(7, 8))) == [("usage_threshold", "agents", 80)]
    assert crossed(change(peak=(8, 11))) == [("usage_threshold", "agents", 100), ("overage", "", 0)]


def test_a_trial_gets_threshold_alerts_but_no_overage_alert() -> None:
    assert crossed(change(("90", "120"), bills_overage=False)) == [
        ("usage_threshold", "minutes", 100)
    ]


def test_nothing_included_means_no_threshold_alerts_only_overage() -> None:
    assert crossed(change(("0", "1"), included=0)) == [("overage", "", 0)]


def test_thresholds_come_from_the_settings() -> None:
    assert crossed(change(("0", "60")), [50, 75]) == [("usage_threshold", "minutes", 50)]


def test_priority_and_action_follow_the_threshold() -> None:
    alerts = alerts_crossed(change(("0", "100")), [80, 100])
    assert [(alert["priority"], alert["action_required"]) for alert in alerts] == [
        ("medium", False),
        ("high", True),
    ]
    assert alerts[1]["message"] == "100% of this period's 100 included call minutes used."
