from app.core.errors import Conflict, InvalidRequest, NotFound


class SubscriptionExists(Conflict):
    code = "subscription_exists"
    message = "This account already has a subscription."


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    message = "This account has no subscription."


class PlanNotAvailable(Conflict):
    code = "plan_not_available"
    message = "This plan is no longer offered."


class PlanNotSynced(Conflict):
    code = "plan_not_synced"
    message = "This plan has no Stripe price yet; run `billing create-stripe-products`."


class AddOnQuantityInvalid(InvalidRequest):
    code = "add_on_quantity_invalid"
    message = "That quantity of this add-on is not offered."


class ActionNotAllowed(Conflict):
    """An action that does not apply to the subscription's current state.

    The code names the state, so the dashboard can say why: `already_canceled`,
    `subscription_not_canceling`, `already_on_plan`, `not_an_upgrade`, ...
    """

    code = "action_not_allowed"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]


class NotInDunning(Conflict):
    code = "not_in_dunning"
    message = "This subscription has no failed payment to retry."


class PaymentRetryInProgress(Conflict):
    code = "payment_retry_in_progress"
    message = "A payment retry of this subscription is already under way."
