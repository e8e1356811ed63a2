"""Checkout Sessions (subscription mode) and billing portal sessions.

A session is created `open` with a `url`; a test plays the customer with
`complete_checkout_session` (the card is charged and the subscription created, as Stripe does
when the customer pays on the hosted page) or `expire_checkout_session`. The webhook events
those would send are built with `FakeStripe.event`.
"""

from tests.stripe.fixtures import stripe_fixture
from tests.stripe.invoicing import FakeInvoicing
from tests.stripe.wire import (
    Params,
    StripeObject,
    as_int,
    as_list,
    check_params,
    invalid_request,
    list_object,
    resource_missing,
)

_CHECKOUT_PARAMS = {
    "automatic_tax",
    "cancel_url",
    "client_reference_id",
    "customer",
    "expires_at",
    "line_items",
    "metadata",
    "mode",
    "subscription_data",
    "success_url",
}
_SUBSCRIPTION_DATA_PARAMS = {
    "billing_mode",
    "metadata",
    "pending_invoice_item_interval",
    "trial_period_days",
}
_PORTAL_PARAMS = {"customer", "return_url"}
# Stripe's bounds on `expires_at`: 30 minutes to 24 hours from creation.
_MIN_LIFETIME, _MAX_LIFETIME = 30 * 60, 24 * 3600


class FakeCheckout(FakeInvoicing):
    def __init__(self, now: int) -> None:
        super().__init__(now)
        self.checkout_sessions: dict[str, StripeObject] = {}
        self.portal_sessions: dict[str, StripeObject] = {}
        # What completing a session creates (its line items and subscription data): Stripe
        # keeps this server-side, the fake beside the object.
        self.checkout_orders: dict[str, StripeObject] = {}

    def checkout_session(self, session_id: str) -> StripeObject:
        if session_id not in self.checkout_sessions:
            raise resource_missing("checkout.session", session_id)
        return self.checkout_sessions[session_id]

    # --- HTTP handlers -----------------------------------------------------------------

    def _create_checkout_session(self, params: Params) -> StripeObject:
        check_params(params, _CHECKOUT_PARAMS, "POST /v1/checkout/sessions")
        check_params(
            params.get("subscription_data") or {},
            _SUBSCRIPTION_DATA_PARAMS,
            "POST /v1/checkout/sessions subscription_data",
        )
        if params.get("mode") != "subscription":
            raise invalid_request(
                "FakeStripe models Checkout in subscription mode only.", param="mode"
            )
        customer = self.customer(params.get("customer"), param="customer", status=400)
        line_items = as_list(params.get("line_items"))
        if not line_items:
            raise invalid_request("Missing required param: line_items.", param="line_items")
        for index, item in enumerate(line_items):
            self.price(item.get("price"), param=f"line_items[{index}][price]")
        success_url = params.get("success_url")
        if not success_url:
            raise invalid_request("Missing required param: success_url.", param="success_url")
        expires_at = as_int(params.get("expires_at")) or self.now + _MAX_LIFETIME
        if not _MIN_LIFETIME <= expires_at - self.now <= _MAX_LIFETIME:
            raise invalid_request(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
                param="expires_at",
            )
        session = stripe_fixture("checkout.session")
        identifier = self.new_id("cs_test")
        session.update(
            id=identifier,
            created=self.now,
            expires_at=expires_at,
            mode="subscription",
            status="open",
            payment_status="unpaid",
            customer=customer["id"],
            customer_email=None,
            client_reference_id=params.get("client_reference_id"),
            metadata=dict(params.get("metadata") or {}),
            success_url=success_url,
            cancel_url=params.get("cancel_url"),
            subscription=None,
            invoice=None,
            payment_intent=None,
            currency=self.prices[line_items[0]["price"]]["currency"],
            url=f"https://checkout.stripe.com/c/pay/{identifier}",
        )
        session["automatic_tax"]["enabled"] = bool(
            (params.get("automatic_tax") or {}).get("enabled") in ("true", True)
        )
        self.checkout_orders[identifier] = {
            "line_items": line_items,
            "subscription_data": dict(params.get("subscription_data") or {}),
        }
        self.checkout_sessions[identifier] = session
        return session

    def _get_checkout_session(self, params: Params, session_id: str) -> StripeObject:
        return self.render(self.checkout_session(session_id), as_list(params.get("expand")))

    def _list_checkout_sessions(self, params: Params) -> StripeObject:
        """Newest first, as Stripe lists; by customer and status only (what the service uses),
        any other filter the Params type allows is refused rather than ignored."""
        modelled = {"customer", "status", "limit"}
        check_params(params, modelled, "GET /v1/checkout/sessions (as the fake models it)")
        found = [
            session
            for session in reversed(self.checkout_sessions.values())
            if params.get("customer") in (None, session["customer"])
            and params.get("status") in (None, session["status"])
        ]
        return list_object("/v1/checkout/sessions", found, params)

    def _expire_checkout_session(self, params: Params, session_id: str) -> StripeObject:
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise invalid_request(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{session["status"]}".',
            )
        session["status"] = "expired"
        return session

    def _create_portal_session(self, params: Params) -> StripeObject:
        check_params(params, _PORTAL_PARAMS, "POST /v1/billing_portal/sessions")
        customer = self.customer(params.get("customer"), param="customer", status=400)
        portal = stripe_fixture("billing_portal.session")
        identifier = self.new_id("bps")
        portal.update(
            id=identifier,
            created=self.now,
            customer=customer["id"],
            flow=None,
            livemode=False,
            return_url=params.get("return_url"),
            url=f"https://billing.stripe.com/p/session/test_{identifier}",
        )
        self.portal_sessions[identifier] = portal
        return portal

    # --- the customer on Stripe's hosted pages -----------------------------------------

    def complete_checkout_session(
        self, session_id: str, *, payment_method_id: str = "pm_card_visa"
    ) -> StripeObject:
        """The customer pays on the hosted page: the card attached and made the default, the
        subscription created (its first invoice charged, or its trial started), the session
        `complete`. Returns the session."""
        session = self.checkout_session(session_id)
        if session["status"] != "open":
            raise ValueError(f"{session_id} is {session['status']}, not open")
        order = self.checkout_orders[session_id]
        customer_id = session["customer"]
        card = self.payment_method(payment_method_id)
        card["customer"] = customer_id
        self.customers[customer_id]["invoice_settings"]["default_payment_method"] = card["id"]
        subscription_data = order["subscription_data"]
        create: Params = {
            "customer": customer_id,
            "items": [
                {"price": item["price"], "quantity": item.get("quantity", "1")}
                for item in order["line_items"]
            ],
            "metadata": dict(subscription_data.get("metadata") or {}),
            "default_payment_method": card["id"],
        }
        for passed_on in ("billing_mode", "pending_invoice_item_interval"):
            if subscription_data.get(passed_on):
                create[passed_on] = subscription_data[passed_on]
        if subscription_data.get("trial_period_days"):
            create["trial_period_days"] = subscription_data["trial_period_days"]
        if session["automatic_tax"]["enabled"]:
            create["automatic_tax"] = {"enabled": "true"}
        subscription = self._create_subscription(create)
        session.update(
            status="complete",
            payment_status="no_payment_required" if subscription["trial_end"] else "paid",
            subscription=subscription["id"],
            invoice=subscription["latest_invoice"],
        )
        return session

    def expire_checkout_session(self, session_id: str) -> StripeObject:
        """The session's time ran out (or it was expired on Stripe's dashboard)."""
        return self._expire_checkout_session({}, session_id)
