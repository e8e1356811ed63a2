from app.core.errors import Conflict, InvalidRequest
from app.customers.errors import CustomerNotFound as CustomerNotFound


class NoActiveSubscription(Conflict):
    code = "no_active_subscription"
    message = "The customer had no subscription at that time."


class UsageConflict(Conflict):
    code = "usage_conflict"
    message = "This call_id was already recorded with different fields."


class UsageTooLate(InvalidRequest):
    code = "usage_too_late"
    message = "The usage period of that timestamp closed more than 35 days ago."


class UsageInFuture(InvalidRequest):
    code = "usage_in_future"
    message = "The timestamp is more than 5 minutes in the future."


class CallTooLong(InvalidRequest):
    code = "call_too_long"
    message = "A call lasts at most 24 hours."


class InvalidUsageRecord(InvalidRequest):
    """A record of a batch that does not parse; the single endpoint reports these as the
    usual `validation_error`."""

    code = "validation_error"
    message = "The record has invalid or missing fields."
