"""`StripeGateway`: every call this service makes to Stripe.

- The client pins the API version that stripe-python pins (`stripe.api_version`); the code
  reads that version's shapes.
- Every write takes an `idempotency_key` built by the caller from our own ids and the request's
  content, so a retried request makes the same Stripe call and Stripe returns the first result
  instead of charging or creating twice.
- Stripe's errors become our typed errors here and nowhere else.
"""

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
import structlog

from app.core.config import Settings
from app.stripe_gateway.errors import (
    PaymentDeclined,
    PaymentMethodNotFound,
    PaymentMethodUnusable,
    StripeIntegrationError,
    StripeUnavailable,
)
from app.stripe_gateway.types import (
    AccountState,
    InvoiceDetails,
    InvoiceDiscountAmount,
    InvoiceLineDetails,
    InvoicePaymentOutcome,
    InvoicePreview,
    InvoiceTaxAmount,
    PaymentMethodCard,
    PostalAddress,
    PriceState,
    ProductState,
    ScheduleState,
    SubscriptionItemState,
    SubscriptionState,
    WebhookEndpointState,
    from_timestamp,
)

logger = structlog.get_logger(__name__)

PINNED_API_VERSION: str = stripe.api_version
# Stripe's tax code for "Software as a service (SaaS) - business use".
SAAS_TAX_CODE = "txcd_10103001"

# Invalid-request codes caused by what the user sent (not by how we built the request).
_PAYMENT_METHOD_STATE_CODES = {
    "payment_method_unexpected_state",
    "payment_method_not_available",
    "payment_method_customer_decline",
    "setup_intent_authentication_failure",
}

Params = dict[str, Any]


def _get(obj: Any, *path: str) -> Any:
    """Read a nested field of a Stripe object or dict; None where any step is missing."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
    return obj


def _plain(stripe_object: Any) -> dict[str, Any]:
    plain: dict[str, Any] = stripe_object.to_dict()
    return plain


def _id(value: Any) -> str | None:
    """An expandable field: either the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    identifier = _get(value, "id")
    return str(identifier) if identifier is not None else None


@contextlib.asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    try:
        yield
    except stripe.CardError as error:
        raise PaymentDeclined(
            error.user_message or "The card was declined.",
            details={
                "decline_code": _get(error.error, "decline_code"),
                "stripe_code": error.code,
            },
        ) from error
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        logger.warning("stripe_unreachable", error=str(error))
        raise StripeUnavailable() from error
    except stripe.IdempotencyError as error:
        if error.http_status == 409:
            # Another request with the same key is still running at Stripe.
            raise StripeUnavailable(
                "The same change is still in progress; retry shortly."
            ) from error
        logger.error("stripe_idempotency_mismatch", error=str(error))
        raise StripeIntegrationError() from error
    except stripe.InvalidRequestError as error:
        param = error.param or ""
        if error.code == "resource_missing" and "payment_method" in param:
            raise PaymentMethodNotFound() from error
        if error.code in _PAYMENT_METHOD_STATE_CODES:
            raise PaymentMethodUnusable(error.user_message or None) from error
        logger.error("stripe_rejected_request", code=error.code, param=param, error=str(error))
        raise StripeIntegrationError() from error
    except stripe.StripeError as error:
        status = error.http_status or 0
        if status >= 500 or status == 0:
            logger.warning("stripe_unavailable", status=status, error=str(error))
            raise StripeUnavailable() from error
        logger.error("stripe_error", status=status, code=error.code, error=str(error))
        raise StripeIntegrationError() from error


def _subscription_state(subscription: Any) -> SubscriptionState:
    items = tuple(
        SubscriptionItemState(
            id=item["id"],
            price_id=_id(item.get("price")) or "",
            quantity=int(item.get("quantity") or 1),
            current_period_start=from_timestamp(item.get("current_period_start")),
            current_period_end=from_timestamp(item.get("current_period_end")),
        )
        for item in (_get(subscription, "items", "data") or [])
    )
    latest_invoice = subscription.get("latest_invoice")
    setup_intent = subscription.get("pending_setup_intent")
    return SubscriptionState(
        id=subscription["id"],
        customer_id=_id(subscription.get("customer")) or "",
        status=subscription["status"],
        items=items,
        trial_end=from_timestamp(subscription.get("trial_end")),
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        canceled_at=from_timestamp(subscription.get("canceled_at")),
        ended_at=from_timestamp(subscription.get("ended_at")),
        schedule_id=_id(subscription.get("schedule")),
        latest_invoice_id=_id(latest_invoice),
        latest_invoice_status=_get(latest_invoice, "status")
        if not isinstance(latest_invoice, str)
        else None,
        invoice_client_secret=_get(latest_invoice, "confirmation_secret", "client_secret")
        if not isinstance(latest_invoice, str)
        else None,
        setup_intent_client_secret=_get(setup_intent, "client_secret")
        if not isinstance(setup_intent, str)
        else None,
        setup_intent_status=_get(setup_intent, "status")
        if not isinstance(setup_intent, str)
        else None,
        has_pending_update=subscription.get("pending_update") is not None,
        metadata=dict(subscription.get("metadata") or {}),
        billing_cycle_anchor=from_timestamp(subscription.get("billing_cycle_anchor")),
    )


def _card(payment_method: Any) -> PaymentMethodCard:
    card = payment_method.get("card") or {}
    return PaymentMethodCard(
        id=payment_method["id"],
        customer_id=_id(payment_method.get("customer")),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def _price(price: Any) -> PriceState:
    return PriceState(
        id=price["id"],
        product_id=_id(price.get("product")) or "",
        unit_amount=price.get("unit_amount"),
        currency=price["currency"],
        interval=_get(price, "recurring", "interval"),
        lookup_key=price.get("lookup_key"),
        active=bool(price.get("active")),
        tax_behavior=price.get("tax_behavior"),
    )


def _product(product: Any) -> ProductState:
    return ProductState(
        id=product["id"],
        name=product["name"],
        active=bool(product.get("active")),
        tax_code=_id(product.get("tax_code")),
        metadata=dict(product.get("metadata") or {}),
    )


def parse_subscription(subscription: dict[str, Any]) -> SubscriptionState:
    """A subscription object (a webhook payload's, or one we fetched) as our type."""
    return _subscription_state(subscription)


def parse_payment_method(payment_method: dict[str, Any]) -> PaymentMethodCard:
    return _card(payment_method)


class InvalidWebhookSignature(Exception):
    """The body is not a Stripe event signed with one of our secrets, or it is stale."""


def _signed_at(signature_header: str) -> int | None:
    for part in signature_header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII digits only, and a sane length: "²" is a digit to str.isdigit, and a
        # 5,000-digit number is no timestamp.
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            return int(value)
    return None


def verify_webhook(
    payload: bytes, signature_header: str, secrets: list[str], now: datetime
) -> dict[str, Any]:
    """Check `Stripe-Signature` (HMAC-SHA256 over "{t}.{body}") against each secret in turn,
    so a secret being rotated and its successor both work, and refuse a signature older (or
    newer) than Stripe's default tolerance of five minutes; return the parsed event.

    stripe-python checks the HMAC; the age is checked here against the injected clock."""
    signed_at = _signed_at(signature_header or "")
    if signed_at is None or not secrets:
        raise InvalidWebhookSignature("missing signature or secret")
    if abs(now.timestamp() - signed_at) > stripe.Webhook.DEFAULT_TOLERANCE:
        raise InvalidWebhookSignature("the signature is too old")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature_header, secret, tolerance=None
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        try:
            event = json.loads(payload)
        except ValueError as error:
            raise InvalidWebhookSignature("signed body is not JSON") from error
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise InvalidWebhookSignature("signed body is not an event")
        return event
    raise InvalidWebhookSignature("no secret matches the signature, or it is too old")


# Objects a webhook may be about, and how to fetch each afresh.
_RETRIEVABLE = {
    "subscription": "subscriptions",
    "invoice": "invoices",
    "payment_method": "payment_methods",
    "subscription_schedule": "subscription_schedules",
    "charge": "charges",
    "customer": "customers",
    "setup_intent": "setup_intents",
    "dispute": "disputes",
}


_SUBSCRIPTION_EXPANSIONS = ["latest_invoice.confirmation_secret", "pending_setup_intent"]
# What an invoice's PDF names besides ids: the coupon behind each discount amount, and the
# account's tax ids as objects (type and value).
_INVOICE_DOCUMENT_EXPANSIONS = ["total_discount_amounts.discount.source.coupon", "account_tax_ids"]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _decimal(value: Any) -> Decimal | None:
    """A decimal field: stripe-python reads `*_decimal` strings as Decimal; floats (a tax
    rate's `percentage`) are read through their shortest repr, so 19.6 stays 19.6."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def _address(value: Any) -> PostalAddress | None:
    if not isinstance(value, Mapping):
        return None
    address = PostalAddress(
        line1=_text(value.get("line1")),
        line2=_text(value.get("line2")),
        city=_text(value.get("city")),
        state=_text(value.get("state")),
        postal_code=_text(value.get("postal_code")),
        country=_text(value.get("country")),
    )
    return address if address.lines() else None


def _invoice_line(line: dict[str, Any]) -> InvoiceLineDetails:
    parent = line.get("parent") or {}
    proration = bool(
        _get(parent, "subscription_item_details", "proration")
        or _get(parent, "invoice_item_details", "proration")
    )
    period = line.get("period") or {}
    quantity = line.get("quantity")
    return InvoiceLineDetails(
        id=str(line["id"]),
        description=_text(line.get("description")),
        amount=_amount(line.get("amount")),
        quantity=quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None,
        unit_amount=_decimal(_get(line, "pricing", "unit_amount_decimal")),
        price_id=_id(_get(line, "pricing", "price_details", "price")),
        proration=proration,
        period_start=from_timestamp(period.get("start")),
        period_end=from_timestamp(period.get("end")),
        metadata={str(k): str(v) for k, v in (line.get("metadata") or {}).items()},
    )


def _discount_amount(entry: dict[str, Any]) -> InvoiceDiscountAmount:
    # Expanded: discount -> source.coupon; an id when Stripe did not expand it.
    discount = entry.get("discount")
    coupon = _get(discount, "source", "coupon") if isinstance(discount, Mapping) else None
    coupon = coupon if isinstance(coupon, Mapping) else {}
    return InvoiceDiscountAmount(
        amount=_amount(entry.get("amount")),
        name=_text(coupon.get("name")),
        percent_off=_decimal(coupon.get("percent_off")),
    )


def _tax_amount(entry: dict[str, Any], rates: Mapping[str, dict[str, Any]]) -> InvoiceTaxAmount:
    rate = rates.get(str(_get(entry, "tax_rate_details", "tax_rate") or ""), {})
    taxable = entry.get("taxable_amount")
    return InvoiceTaxAmount(
        amount=_amount(entry.get("amount")),
        taxable_amount=taxable if isinstance(taxable, int) else None,
        inclusive=entry.get("tax_behavior") == "inclusive",
        display_name=_text(rate.get("display_name")),
        percentage=_decimal(rate.get("percentage")),
        jurisdiction=_text(rate.get("jurisdiction")),
        taxability_reason=_text(entry.get("taxability_reason")),
    )


def _invoice_details(
    invoice: dict[str, Any],
    lines: list[dict[str, Any]],
    tax_rates: Mapping[str, dict[str, Any]],
) -> InvoiceDetails:
    transitions = invoice.get("status_transitions") or {}
    return InvoiceDetails(
        id=str(invoice["id"]),
        number=_text(invoice.get("number")),
        status=str(invoice.get("status") or ""),
        currency=str(invoice["currency"]).lower(),
        customer_id=_id(invoice.get("customer")),
        customer_name=_text(invoice.get("customer_name")),
        customer_email=_text(invoice.get("customer_email")),
        customer_address=_address(invoice.get("customer_address")),
        customer_tax_ids=tuple(
            (str(tax_id.get("type") or ""), str(tax_id["value"]))
            for tax_id in invoice.get("customer_tax_ids") or []
            if isinstance(tax_id, Mapping) and tax_id.get("value")
        ),
        account_tax_ids=tuple(
            str(tax_id["value"])
            for tax_id in invoice.get("account_tax_ids") or []
            if isinstance(tax_id, Mapping) and tax_id.get("value")
        ),
        created=from_timestamp(invoice.get("created")),
        finalized_at=from_timestamp(transitions.get("finalized_at")),
        paid_at=from_timestamp(transitions.get("paid_at")),
        due_date=from_timestamp(invoice.get("due_date")),
        period_start=from_timestamp(invoice.get("period_start")),
        period_end=from_timestamp(invoice.get("period_end")),
        subtotal=_amount(invoice.get("subtotal")),
        total=_amount(invoice.get("total")),
        amount_paid=_amount(invoice.get("amount_paid")),
        amount_due=_amount(invoice.get("amount_due")),
        amount_remaining=_amount(invoice.get("amount_remaining")),
        starting_balance=_amount(invoice.get("starting_balance")),
        discounts=tuple(
            _discount_amount(entry)
            for entry in invoice.get("total_discount_amounts") or []
            if _amount(entry.get("amount"))
        ),
        taxes=tuple(_tax_amount(entry, tax_rates) for entry in invoice.get("total_taxes") or []),
        lines=tuple(_invoice_line(line) for line in lines),
        description=_text(invoice.get("description")),
        metadata={str(k): str(v) for k, v in (invoice.get("metadata") or {}).items()},
    )


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        secret_key = settings.STRIPE_SECRET_KEY
        self._client = stripe.StripeClient(
            secret_key.get_secret_value() if secret_key else "sk_test_not_configured",
            stripe_version=PINNED_API_VERSION,
            base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {},
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=stripe.HTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )
        # The typed services of stripe-python, used untyped: every answer is turned into a
        # plain dict at once and read into our own types below.
        self._stripe: Any = self._client.v1
        self.automatic_tax = settings.STRIPE_AUTOMATIC_TAX

    @staticmethod
    def _options(idempotency_key: str | None = None) -> Any:
        return {"idempotency_key": idempotency_key} if idempotency_key else {}

    # --- customers ---------------------------------------------------------------------

    async def find_customer(self, *, dashboard_user_id: str, email: str | None) -> str | None:
        """An existing Stripe customer of this user (made by the old module, or by us)."""
        async with _translated_errors():
            # Search can lag writes by a minute; it is for customers made long ago. Our own
            # creation is protected by its idempotency key instead.
            found = _plain(
                await self._stripe.customers.search_async(
                    {"query": f"metadata['dashboard_user_id']:'{dashboard_user_id}'", "limit": 1}
                )
            )
            if found["data"]:
                return str(found["data"][0]["id"])
            if email:
                by_email = _plain(
                    await self._stripe.customers.list_async({"email": email, "limit": 10})
                )
                for candidate in by_email["data"]:
                    # Another user's account with the same address is not this user's.
                    owner = (candidate.get("metadata") or {}).get("dashboard_user_id")
                    if owner in (None, dashboard_user_id):
                        return str(candidate["id"])
        return None

    async def create_customer(
        self,
        *,
        dashboard_user_id: str,
        email: str | None,
        name: str | None,
        idempotency_key: str,
    ) -> str:
        params: Params = {"metadata": {"dashboard_user_id": dashboard_user_id}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        async with _translated_errors():
            customer = _plain(
                await self._stripe.customers.create_async(params, self._options(idempotency_key))
            )
        return str(customer["id"])

    async def tag_customer(
        self, *, customer_id: str, dashboard_user_id: str, idempotency_key: str
    ) -> None:
        """Mark an adopted customer with our metadata, so the next lookup finds it by id."""
        async with _translated_errors():
            await self._stripe.customers.update_async(
                customer_id,
                {"metadata": {"dashboard_user_id": dashboard_user_id}},
                self._options(idempotency_key),
            )

    # --- payment methods ---------------------------------------------------------------

    async def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodCard:
        async with _translated_errors():
            payment_method = _plain(
                await self._stripe.payment_methods.retrieve_async(payment_method_id)
            )
        return _card(payment_method)

    async def attach_payment_method(
        self, *, payment_method_id: str, customer_id: str, idempotency_key: str
    ) -> PaymentMethodCard:
        async with _translated_errors():
            payment_method = _plain(
                await self._stripe.payment_methods.attach_async(
                    payment_method_id, {"customer": customer_id}, self._options(idempotency_key)
                )
            )
        return _card(payment_method)

    async def detach_payment_method(self, *, payment_method_id: str, idempotency_key: str) -> None:
        async with _translated_errors():
            await self._stripe.payment_methods.detach_async(
                payment_method_id, options=self._options(idempotency_key)
            )

    async def set_default_payment_method(
        self, *, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> None:
        async with _translated_errors():
            await self._stripe.customers.update_async(
                customer_id,
                {"invoice_settings": {"default_payment_method": payment_method_id}},
                self._options(idempotency_key),
            )

    async def list_payment_methods(self, *, customer_id: str) -> list[PaymentMethodCard]:
        async with _translated_errors():
            page = _plain(
                await self._stripe.payment_methods.list_async(
                    {"customer": customer_id, "type": "card", "limit": 100}
                )
            )
        return [_card(payment_method) for payment_method in page["data"]]

    async def default_payment_method_id(self, *, customer_id: str) -> str | None:
        async with _translated_errors():
            customer = _plain(await self._stripe.customers.retrieve_async(customer_id))
        return _id(_get(customer, "invoice_settings", "default_payment_method"))

    async def create_setup_intent(self, *, customer_id: str, idempotency_key: str) -> str:
        async with _translated_errors():
            setup_intent = _plain(
                await self._stripe.setup_intents.create_async(
                    {
                        "customer": customer_id,
                        "usage": "off_session",
                        "payment_method_types": ["card"],
                    },
                    self._options(idempotency_key),
                )
            )
        return str(setup_intent["client_secret"])

    # --- subscriptions -----------------------------------------------------------------

    async def create_subscription(
        self,
        *,
        customer_id: str,
        items: list[tuple[str, int]],
        trial_days: int,
        metadata: dict[str, str],
        idempotency_key: str,
        pending_invoice_item_interval: str | None = None,
    ) -> SubscriptionState:
        params: Params = {
            "customer": customer_id,
            "items": [{"price": price, "quantity": quantity} for price, quantity in items],
            # Charge the card now; a decline or SCA leaves the subscription `incomplete`
            # with its open invoice, instead of failing the request.
            "payment_behavior": "allow_incomplete",
            # Flexible billing mode bases credit prorations on what was actually paid, so an
            # upgrade followed by a downgrade never credits more than the customer paid.
            "billing_mode": {"type": "flexible"},
            # No subscription-level card: invoices charge the customer's default card, so
            # "make default" in payment-methods/ is what renewals use.
            "metadata": metadata,
            "expand": _SUBSCRIPTION_EXPANSIONS,
        }
        if trial_days > 0:
            params["trial_period_days"] = trial_days
        if pending_invoice_item_interval is not None:
            # A yearly subscription invoices only once a year; with this, Stripe invoices its
            # pending items (the monthly overage) every interval instead of at the renewal.
            params["pending_invoice_item_interval"] = {"interval": pending_invoice_item_interval}
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        async with _translated_errors():
            subscription = _plain(
                await self._stripe.subscriptions.create_async(
                    params, self._options(idempotency_key)
                )
            )
        return _subscription_state(subscription)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState:
        async with _translated_errors():
            subscription = _plain(
                await self._stripe.subscriptions.retrieve_async(
                    subscription_id, {"expand": _SUBSCRIPTION_EXPANSIONS}
                )
            )
        return _subscription_state(subscription)

    async def find_subscription_by_metadata(
        self, *, customer_id: str, key: str, value: str
    ) -> SubscriptionState | None:
        """A subscription we created for a reservation, if an earlier attempt got that far."""
        async with _translated_errors():
            page = _plain(
                await self._stripe.subscriptions.list_async(
                    {"customer": customer_id, "status": "all", "limit": 100}
                )
            )
        for subscription in page["data"]:
            if (subscription.get("metadata") or {}).get(key) == value:
                return await self.retrieve_subscription(subscription["id"])
        return None

    async def latest_payment_outcome(self, *, invoice_id: str) -> InvoicePaymentOutcome:
        """How the last attempt to pay an invoice went (declined, needs SCA, succeeded)."""
        async with _translated_errors():
            page = _plain(
                await self._stripe.invoice_payments.list_async(
                    {"invoice": invoice_id, "expand": ["data.payment.payment_intent"], "limit": 10}
                )
            )
        payments = page["data"]
        if not payments:
            return InvoicePaymentOutcome(None, None, None)
        # Stripe lists newest first; `created` has one-second resolution, so on a tie the
        # list order decides.
        latest = max(enumerate(payments), key=lambda pair: (pair[1].get("created") or 0, -pair[0]))[
            1
        ]
        payment_intent = _get(latest, "payment", "payment_intent")
        if isinstance(payment_intent, str) or payment_intent is None:
            return InvoicePaymentOutcome(None, None, None)
        error = payment_intent.get("last_payment_error") or {}
        return InvoicePaymentOutcome(
            payment_intent_status=payment_intent.get("status"),
            decline_code=error.get("decline_code") or error.get("code"),
            failure_message=error.get("message"),
        )

    async def pay_invoice(
        self, *, invoice_id: str, payment_method_id: str, idempotency_key: str
    ) -> str:
        """Pay an open invoice with a given card; returns the invoice's status."""
        async with _translated_errors():
            invoice = _plain(
                await self._stripe.invoices.pay_async(
                    invoice_id,
                    {"payment_method": payment_method_id},
                    self._options(idempotency_key),
                )
            )
        return str(invoice["status"])

    async def update_subscription(
        self, *, subscription_id: str, params: Params, idempotency_key: str
    ) -> SubscriptionState:
        async with _translated_errors():
            subscription = _plain(
                await self._stripe.subscriptions.update_async(
                    subscription_id,
                    {**params, "expand": _SUBSCRIPTION_EXPANSIONS},
                    self._options(idempotency_key),
                )
            )
        return _subscription_state(subscription)

    async def cancel_subscription_now(
        self, *, subscription_id: str, idempotency_key: str
    ) -> SubscriptionState:
        async with _translated_errors():
            subscription = _plain(
                await self._stripe.subscriptions.cancel_async(
                    subscription_id, {"prorate": False}, self._options(idempotency_key)
                )
            )
        return _subscription_state(subscription)

    async def add_subscription_item(
        self, *, subscription_id: str, price_id: str, quantity: int, idempotency_key: str
    ) -> str:
        async with _translated_errors():
            item = _plain(
                await self._stripe.subscription_items.create_async(
                    {
                        "subscription": subscription_id,
                        "price": price_id,
                        "quantity": quantity,
                        # An add-on is charged now, and only granted if that charge succeeds.
                        "proration_behavior": "always_invoice",
                        "payment_behavior": "pending_if_incomplete",
                    },
                    self._options(idempotency_key),
                )
            )
        return str(item["id"])

    async def update_subscription_item(
        self, *, item_id: str, quantity: int, idempotency_key: str, charge_now: bool
    ) -> None:
        params: Params = {"quantity": quantity}
        if charge_now:
            params.update(
                proration_behavior="always_invoice", payment_behavior="pending_if_incomplete"
            )
        else:
            params.update(proration_behavior="create_prorations")
        async with _translated_errors():
            await self._stripe.subscription_items.update_async(
                item_id, params, self._options(idempotency_key)
            )

    async def remove_subscription_item(self, *, item_id: str, idempotency_key: str) -> None:
        async with _translated_errors():
            # The unused time becomes a credit on the next invoice.
            await self._stripe.subscription_items.delete_async(
                item_id, {"proration_behavior": "create_prorations"}, self._options(idempotency_key)
            )

    async def preview_change(
        self,
        *,
        customer_id: str,
        subscription_id: str,
        items: list[Params],
        proration_date: int,
    ) -> InvoicePreview:
        """The next invoice if the change were made at `proration_date`."""
        async with _translated_errors():
            invoice = _plain(
                await self._stripe.invoices.create_preview_async(
                    {
                        "customer": customer_id,
                        "subscription": subscription_id,
                        "subscription_details": {
                            "items": items,
                            "proration_date": proration_date,
                            "proration_behavior": "create_prorations",
                        },
                    }
                )
            )
        proration = sum(
            int(line.get("amount") or 0)
            for line in _get(invoice, "lines", "data") or []
            if _get(line, "parent", "subscription_item_details", "proration")
        )
        return InvoicePreview(
            currency=invoice["currency"],
            total=int(invoice.get("total") or 0),
            proration_amount=proration,
            next_payment_attempt=from_timestamp(invoice.get("next_payment_attempt")),
            period_end=from_timestamp(invoice.get("period_end")),
        )

    # --- subscription schedules (changes at the period end) ----------------------------

    async def create_schedule_from_subscription(
        self, *, subscription_id: str, idempotency_key: str
    ) -> ScheduleState:
        async with _translated_errors():
            schedule = _plain(
                await self._stripe.subscription_schedules.create_async(
                    {"from_subscription": subscription_id}, self._options(idempotency_key)
                )
            )
        return self._schedule(schedule)

    async def schedule_change_at_period_end(
        self,
        *,
        schedule_id: str,
        current_phase_start: int,
        period_end: int,
        current_items: list[tuple[str, int]],
        next_items: list[tuple[str, int]],
        next_interval: str,
        idempotency_key: str,
    ) -> ScheduleState:
        """Keep the current phase until the period ends, then one phase of the new price,
        after which the schedule releases the subscription to renew on its own."""
        params: Params = {
            "end_behavior": "release",
            "proration_behavior": "none",
            "phases": [
                {
                    "items": [{"price": p, "quantity": q} for p, q in current_items],
                    "start_date": current_phase_start,
                    "end_date": period_end,
                },
                {
                    "items": [{"price": p, "quantity": q} for p, q in next_items],
                    "duration": {"interval": next_interval, "interval_count": 1},
                },
            ],
        }
        async with _translated_errors():
            schedule = _plain(
                await self._stripe.subscription_schedules.update_async(
                    schedule_id, params, self._options(idempotency_key)
                )
            )
        return self._schedule(schedule)

    async def retrieve_schedule(self, schedule_id: str) -> ScheduleState:
        async with _translated_errors():
            schedule = _plain(await self._stripe.subscription_schedules.retrieve_async(schedule_id))
        return self._schedule(schedule)

    async def release_schedule(self, *, schedule_id: str, idempotency_key: str) -> None:
        async with _translated_errors():
            try:
                await self._stripe.subscription_schedules.release_async(
                    schedule_id, options=self._options(idempotency_key)
                )
            except stripe.InvalidRequestError as error:
                # Already released, completed or canceled: the goal (no schedule) holds.
                if not any(s in str(error) for s in ("released", "completed", "canceled")):
                    raise

    @staticmethod
    def _schedule(schedule: Any) -> ScheduleState:
        phases = schedule.get("phases") or []
        current = phases[0] if phases else {}
        return ScheduleState(
            id=schedule["id"],
            status=schedule.get("status") or "",
            phase_bounds=tuple(
                (int(phase.get("start_date") or 0), phase.get("end_date")) for phase in phases
            ),
            current_phase_items=tuple(
                (_id(item.get("price")) or "", int(item.get("quantity") or 1))
                for item in current.get("items") or []
            ),
        )

    # --- catalog -----------------------------------------------------------------------

    async def retrieve_product(self, product_id: str) -> ProductState | None:
        async with _translated_errors():
            try:
                product = _plain(await self._stripe.products.retrieve_async(product_id))
            except stripe.InvalidRequestError as error:
                if error.code == "resource_missing":
                    return None
                raise
        return _product(product)

    async def create_product(
        self,
        *,
        product_id: str,
        name: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProductState:
        params: Params = {
            "id": product_id,
            "name": name,
            "tax_code": SAAS_TAX_CODE,
            "metadata": metadata,
        }
        if description:
            params["description"] = description
        async with _translated_errors():
            product = _plain(
                await self._stripe.products.create_async(params, self._options(idempotency_key))
            )
        return _product(product)

    async def update_product(
        self, *, product_id: str, name: str, description: str, active: bool, idempotency_key: str
    ) -> ProductState:
        params: Params = {"name": name, "active": active, "tax_code": SAAS_TAX_CODE}
        if description:
            params["description"] = description
        async with _translated_errors():
            product = _plain(
                await self._stripe.products.update_async(
                    product_id, params, self._options(idempotency_key)
                )
            )
        return _product(product)

    async def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, PriceState]:
        async with _translated_errors():
            page = _plain(
                await self._stripe.prices.list_async({"lookup_keys": lookup_keys, "limit": 100})
            )
        return {price["lookup_key"]: _price(price) for price in page["data"]}

    async def create_price(
        self,
        *,
        product_id: str,
        unit_amount: int,
        currency: str,
        interval: str,
        lookup_key: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> PriceState:
        async with _translated_errors():
            price = _plain(
                await self._stripe.prices.create_async(
                    {
                        "product": product_id,
                        "unit_amount": unit_amount,
                        "currency": currency,
                        "recurring": {"interval": interval},
                        "lookup_key": lookup_key,
                        # Moves the key from an older price in the same call, so there is never
                        # a moment with two prices (or none) under one key.
                        "transfer_lookup_key": True,
                        # Settable only at creation: lets Stripe Tax be switched on later.
                        "tax_behavior": "exclusive",
                        "metadata": metadata,
                    },
                    self._options(idempotency_key),
                )
            )
        return _price(price)

    async def archive_price(self, *, price_id: str, idempotency_key: str) -> None:
        async with _translated_errors():
            await self._stripe.prices.update_async(
                price_id, {"active": False}, self._options(idempotency_key)
            )

    # --- webhooks ----------------------------------------------------------------------

    async def retrieve_object(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        """An object as Stripe holds it now, in the pinned version's shape; None if gone."""
        service_name = _RETRIEVABLE.get(object_type)
        if service_name is None:
            return None
        async with _translated_errors():
            try:
                found = await getattr(self._stripe, service_name).retrieve_async(object_id)
            except stripe.InvalidRequestError as error:
                if error.code == "resource_missing":
                    return None
                raise
        return _plain(found)

    # --- account -----------------------------------------------------------------------

    async def retrieve_account(self) -> AccountState:
        async with _translated_errors():
            account = _plain(await self._stripe.accounts.retrieve_current_async())
        return AccountState(
            id=account["id"],
            livemode=bool(account.get("livemode", False)),
            display_name=_get(account, "settings", "dashboard", "display_name"),
        )

    async def list_webhook_endpoints(self) -> list[WebhookEndpointState]:
        async with _translated_errors():
            page = _plain(await self._stripe.webhook_endpoints.list_async({"limit": 100}))
        return [
            WebhookEndpointState(
                id=endpoint["id"],
                url=endpoint["url"],
                api_version=endpoint.get("api_version"),
                status=endpoint.get("status") or "",
                enabled_events=tuple(endpoint.get("enabled_events") or ()),
            )
            for endpoint in page["data"]
        ]

    # --- reconciliation and import -----------------------------------------------------

    async def _every_page(self, service: Any, params: Params) -> list[dict[str, Any]]:
        """All objects of a list endpoint, in Stripe's order (newest first), 100 a page."""
        objects: list[dict[str, Any]] = []
        starting_after: str | None = None
        while True:
            page_params: Params = {**params, "limit": 100}
            if starting_after is not None:
                page_params["starting_after"] = starting_after
            async with _translated_errors():
                page = await service.list_async(page_params)
            # JSON-safe: stripe-python reads decimal strings (`unit_amount_decimal`) as
            # Decimal, and an event is stored as JSON exactly as Stripe sent it.
            plain: dict[str, Any] = page.to_dict(for_json=True)
            data: list[dict[str, Any]] = plain["data"]
            objects.extend(data)
            if not plain.get("has_more") or not data:
                return objects
            starting_after = str(data[-1]["id"])

    async def list_events(self, *, created_from: datetime | None) -> list[dict[str, Any]]:
        """Stripe's events created at or after `created_from` (Stripe keeps 30 days), oldest
        first. Each is rendered in the API version it was created with, not the pinned one."""
        params: Params = {}
        if created_from is not None:
            params["created"] = {"gte": int(created_from.timestamp())}
        newest_first = await self._every_page(self._stripe.events, params)
        # Reversed, then a stable sort: events of the same second keep Stripe's order.
        return sorted(reversed(newest_first), key=lambda event: int(event.get("created") or 0))

    async def list_customers(self) -> list[dict[str, Any]]:
        """Every customer of the account, newest first (deleted ones are not listed)."""
        return await self._every_page(self._stripe.customers, {})

    async def list_subscriptions(
        self, *, customer_id: str | None = None
    ) -> list[SubscriptionState]:
        """Subscriptions in every status, canceled too, newest first; the account's, or one
        customer's."""
        params: Params = {"status": "all"}
        if customer_id is not None:
            params["customer"] = customer_id
        return [
            _subscription_state(subscription)
            for subscription in await self._every_page(self._stripe.subscriptions, params)
        ]

    async def list_invoices(self, *, customer_id: str) -> list[dict[str, Any]]:
        """A customer's invoices in every status, newest first, as Stripe holds them."""
        return await self._every_page(self._stripe.invoices, {"customer": customer_id})

    # --- invoice documents -------------------------------------------------------------

    async def retrieve_invoice_details(self, invoice_id: str) -> InvoiceDetails | None:
        """An invoice with every line, its discounts (named by their coupons) and its taxes
        (named by their tax rates); None if Stripe has no such invoice.

        An invoice embeds only its first lines (`lines.has_more`); the rest are paged from
        `GET /v1/invoices/{id}/lines`, 100 at a time, after the last embedded one."""
        async with _translated_errors():
            try:
                invoice = _plain(
                    await self._stripe.invoices.retrieve_async(
                        invoice_id, {"expand": _INVOICE_DOCUMENT_EXPANSIONS}
                    )
                )
            except stripe.InvalidRequestError as error:
                if error.code == "resource_missing":
                    return None
                raise
            embedded = invoice.get("lines") or {}
            lines: list[dict[str, Any]] = list(embedded.get("data") or [])
            has_more = bool(embedded.get("has_more"))
            while has_more and lines:
                page = _plain(
                    await self._stripe.invoices.line_items.list_async(
                        invoice_id, {"limit": 100, "starting_after": str(lines[-1]["id"])}
                    )
                )
                data: list[dict[str, Any]] = page.get("data") or []
                lines.extend(data)
                has_more = bool(page.get("has_more")) and bool(data)
            rate_ids = sorted(
                {
                    str(rate_id)
                    for entry in invoice.get("total_taxes") or []
                    if (rate_id := _get(entry, "tax_rate_details", "tax_rate"))
                }
            )
            tax_rates = {
                rate_id: _plain(await self._stripe.tax_rates.retrieve_async(rate_id))
                for rate_id in rate_ids
            }
        return _invoice_details(invoice, lines, tax_rates)

    # --- overage: invoice items and one-off invoices ---------------------------------

    async def create_invoice_item(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        period: tuple[datetime, datetime],
        invoice_id: str | None,
        subscription_id: str | None,
        idempotency_key: str,
    ) -> str:
        """An invoice item of `amount` minor units (negative: a credit); returns its id.

        With `invoice_id` it goes on that invoice, which must still be a draft. Without, it
        is pending and Stripe puts it on the subscription's (or, with no subscription, the
        customer's) next invoice."""
        params: Params = {
            "customer": customer_id,
            "amount": amount,
            "currency": currency,
            "description": description,
            "metadata": metadata,
            "period": {"start": int(period[0].timestamp()), "end": int(period[1].timestamp())},
            # As the catalog's prices: taxed on top, as software, if Stripe Tax is switched on.
            "tax_behavior": "exclusive",
            "tax_code": SAAS_TAX_CODE,
        }
        if invoice_id is not None:
            params["invoice"] = invoice_id
        if subscription_id is not None:
            params["subscription"] = subscription_id
        async with _translated_errors():
            item = _plain(
                await self._stripe.invoice_items.create_async(
                    params, self._options(idempotency_key)
                )
            )
        return str(item["id"])

    async def list_invoice_items(
        self, *, customer_id: str, created_from: datetime | None = None
    ) -> list[dict[str, Any]]:
        """A customer's invoice items, pending or invoiced, newest first; those created at or
        after `created_from` when given."""
        params: Params = {"customer": customer_id}
        if created_from is not None:
            params["created"] = {"gte": int(created_from.timestamp())}
        return await self._every_page(self._stripe.invoice_items, params)

    async def create_invoice(
        self,
        *,
        customer_id: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        """A one-off draft invoice, charged to the customer's default card once finalized;
        returns its id. It takes none of the customer's pending items, only what is added to
        it with `invoice=`, and Stripe leaves it a draft until `finalize_invoice`."""
        params: Params = {
            "customer": customer_id,
            "collection_method": "charge_automatically",
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": description,
            "metadata": metadata,
        }
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        async with _translated_errors():
            invoice = _plain(
                await self._stripe.invoices.create_async(params, self._options(idempotency_key))
            )
        return str(invoice["id"])

    async def finalize_invoice(self, *, invoice_id: str, idempotency_key: str) -> str:
        """Finalize a draft and let Stripe collect it (auto_advance); returns its status."""
        async with _translated_errors():
            invoice = _plain(
                await self._stripe.invoices.finalize_invoice_async(
                    invoice_id, {"auto_advance": True}, self._options(idempotency_key)
                )
            )
        return str(invoice["status"])
