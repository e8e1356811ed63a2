"""How a call's duration becomes billable minutes: the plan's `call_rounding`, written once.

- `per_second`: the exact duration, seconds / 60, kept to the 4 decimal places a minutes
  column holds (a ten-thousandth of a minute is 6 ms; the rounding is half up, so no call is
  off by more than 3 ms).
- `per_minute`: each call rounded up to the next whole minute (61 s is 2 minutes, 0 s is 0).
"""

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

MINUTE_PLACES = Decimal("0.0001")
SECONDS_PER_MINUTE = Decimal(60)
# The longest call the service accepts: a day. Anything longer is a client bug, not a call.
MAX_CALL_MINUTES = Decimal(24 * 60)
MAX_CALL_SECONDS = MAX_CALL_MINUTES * SECONDS_PER_MINUTE


def minutes_for_call(duration_seconds: Decimal, call_rounding: str) -> Decimal:
    """Billable minutes of a call lasting `duration_seconds`, under the plan's rounding."""
    minutes = duration_seconds / SECONDS_PER_MINUTE
    if call_rounding == "per_minute":
        return minutes.to_integral_value(rounding=ROUND_CEILING)
    return minutes.quantize(MINUTE_PLACES, rounding=ROUND_HALF_UP)
