"""A usage period's minutes projected to its end, for the dashboard's summary.

Linear on elapsed time: minutes used so far / elapsed time x the period's length, with the
elapsed time counted as at least one day so the first hours of a period do not extrapolate
a handful of calls into a month, and never less than the minutes already used. The agent
peak is not projected: the peak so far is the best estimate of the period's peak.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from app.core.periods import UsagePeriod

MINIMUM_ELAPSED_FOR_PROJECTION = timedelta(days=1)


def project_minutes(minutes_used: Decimal, period: UsagePeriod, now: datetime) -> Decimal:
    """Minutes expected by the period's end if use continues at the rate seen so far."""
    if now >= period.end:
        return minutes_used
    elapsed = max(now - period.start, MINIMUM_ELAPSED_FOR_PROJECTION)
    length = period.end - period.start
    projected = minutes_used * Decimal(length.total_seconds()) / Decimal(elapsed.total_seconds())
    return max(projected, minutes_used)
