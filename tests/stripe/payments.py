"""Invoices and their payments: finalizing, charging a card, paying, and what paying does.

Simplifications (the fake's, not Stripe's): a month is 30 days and a year 365; an invoice is
finalized at once and has one payment intent, which every attempt to pay it confirms again.
"""

import copy
from datetime import UTC, datetime

from app.core.periods import add_months
from tests.stripe.fixtures import stripe_fixture
from tests.stripe.state import DAY, INTERVAL_DAYS, FakeState, card_outcome
from tests.stripe.wire import (
    Params,
    StripeApiError,
    StripeObject,
    card_error,
    invalid_request,
    merge_metadata,
    resource_missing,
)

_DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "generic_decline": "Your card was declined.",
}
_REQUIRES_ACTION_MESSAGE = (
    "This payment requires additional user action before it can be completed successfully. "
    "Payment can be completed using the PaymentIntent associated with the invoice."
)


def item_amount(item: StripeObject) -> int:
    return int(item["price"]["unit_amount"] or 0) * int(item.get("quantity") or 0)


def period_end(start: int, interval: str, count: int = 1, *, anchor: int | None = None) -> int:
    """The end of `count` periods from `start`: Stripe's months and years are calendar ones
    on the billing anchor's day, a shorter month ending on its last day (an anchor on the
    31st bills to February 28th, then March 31st), always counted from the anchor (`start`
    when none is given) so a clamped February does not move every later period."""
    if interval not in ("month", "year"):
        return start + INTERVAL_DAYS[interval] * DAY * count
    step = 12 if interval == "year" else 1
    base = datetime.fromtimestamp(start if anchor is None else anchor, UTC)
    moment = datetime.fromtimestamp(start, UTC)
    boundary = max(((moment.year - base.year) * 12 + moment.month - base.month) // step - 1, 0)
    while add_months(base, boundary * step) <= moment:
        boundary += 1
    return int(add_months(base, (boundary + count - 1) * step).timestamp())


class FakePayments(FakeState):
    def __init__(self, now: int) -> None:
        super().__init__(now)
        # subscription id -> (invoice id, the items to apply once that invoice is paid, metadata)
        self._pending: dict[str, tuple[str, list[StripeObject], dict[str, str]]] = {}
        # (invoice id, who attempted: "stripe_automatic", or "pay" for POST
        # /v1/invoices/{id}/pay), one per charge actually attempted (a replayed key is none).
        self.payment_attempts: list[tuple[str, str]] = []
        # A card's outcome set by a test (payment intent status, decline code), over the one
        # its id names: a card that starts declining at a renewal, or works again later.
        self.card_outcomes: dict[str, tuple[str, str | None]] = {}

    # --- look-ups ----------------------------------------------------------------------

    def invoice(self, invoice_id: str) -> StripeObject:
        if invoice_id not in self.invoices:
            raise resource_missing("invoice", invoice_id)
        return self.invoices[invoice_id]

    @staticmethod
    def _subscription_id_of(invoice: StripeObject) -> str | None:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        subscription = details.get("subscription")
        return str(subscription) if subscription else None

    # --- builders ----------------------------------------------------------------------

    def _line(
        self,
        item: StripeObject,
        amount: int,
        *,
        proration: bool,
        start: int,
        end: int,
    ) -> StripeObject:
        price = item["price"]
        line = stripe_fixture("line_item")
        line.update(
            id=self.new_id("il"),
            amount=amount,
            subtotal=amount,
            currency=price["currency"],
            description=f"{item.get('quantity')} x {price['id']}"
            + (" (proration)" if proration else ""),
            discountable=not proration,
            period={"start": start, "end": end},
            quantity=item.get("quantity"),
            subscription=item["subscription"],
            parent={
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": item["subscription"],
                    "subscription_item": item["id"],
                },
            },
            pricing={
                "type": "price_details",
                "price_details": {"price": price["id"], "product": price["product"]},
                "unit_amount_decimal": price["unit_amount_decimal"],
            },
        )
        return line

    def _invoice_object(
        self, subscription: StripeObject, lines: list[StripeObject], billing_reason: str
    ) -> StripeObject:
        """An invoice of these lines (not stored: `create_preview` uses it as it is)."""
        invoice = stripe_fixture("invoice")
        invoice.pop("subscription", None)  # Gone since basil: see `parent` below.
        total = sum(int(line["amount"]) for line in lines)
        customer = self.customers.get(subscription["customer"]) or {}
        invoice.update(
            id=self.new_id("in"),
            created=self.now,
            effective_at=self.now,
            customer=subscription["customer"],
            customer_email=customer.get("email"),
            customer_name=customer.get("name"),
            currency=lines[0]["currency"] if lines else subscription["currency"],
            billing_reason=billing_reason,
            amount_due=max(total, 0),
            amount_paid=0,
            amount_remaining=max(total, 0),
            amount_overpaid=0,
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            attempt_count=0,
            attempted=False,
            auto_advance=True,
            due_date=None,
            from_invoice=None,
            last_finalization_error=None,
            next_payment_attempt=None,
            period_start=self.now,
            period_end=self.now,
            shipping_cost=None,
            shipping_details=None,
            webhooks_delivered_at=None,
            metadata={},
            parent={
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription.get("metadata") or {}),
                    "subscription": subscription["id"],
                },
            },
        )
        for line in lines:
            line["invoice"] = invoice["id"]
        invoice["lines"] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": f"/v1/invoices/{invoice['id']}/lines",
        }
        return invoice

    def _open_invoice(
        self, subscription: StripeObject, lines: list[StripeObject], billing_reason: str
    ) -> StripeObject:
        """A finalized invoice, stored; with its payment intent when there is anything to pay."""
        invoice = self._invoice_object(subscription, lines, billing_reason)
        invoice["number"] = f"FAKE-{len(self.invoices) + 1:04d}"
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = self.now
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/fake/{invoice['id']}"
        self.invoices[invoice["id"]] = invoice
        if invoice["amount_due"] > 0:
            payment_intent = self._new_payment_intent(invoice)
            invoice["confirmation_secret"] = {
                "client_secret": payment_intent["client_secret"],
                "type": "payment_intent",
            }
        else:
            self._mark_paid(invoice)
        return invoice

    def _new_payment_intent(self, invoice: StripeObject) -> StripeObject:
        payment_intent = stripe_fixture("payment_intent")
        identifier = self.new_id("pi")
        payment_intent.update(
            id=identifier,
            client_secret=self.secret_for(identifier),
            amount=invoice["amount_due"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            created=self.now,
            canceled_at=None,
            description=f"Invoice {invoice['number']}",
            last_payment_error=None,
            next_action=None,
            latest_charge=None,
            processing=None,
            transfer_data=None,
            automatic_payment_methods=None,
            payment_method_configuration_details=None,
            status="requires_payment_method",
        )
        self.payment_intents[identifier] = payment_intent
        invoice_payment = stripe_fixture("invoice_payment")
        invoice_payment.update(
            id=self.new_id("inpay"),
            invoice=invoice["id"],
            amount_requested=invoice["amount_due"],
            amount_paid=None,
            currency=invoice["currency"],
            created=self.now,
            livemode=False,
            is_default=True,
            status="open",
            payment={"type": "payment_intent", "payment_intent": identifier},
        )
        self.invoice_payments[invoice_payment["id"]] = invoice_payment
        return payment_intent

    def _new_charge(self, payment_intent: StripeObject, decline_code: str | None) -> StripeObject:
        charge = stripe_fixture("charge")
        succeeded = decline_code is None
        charge.update(
            id=self.new_id("ch"),
            amount=payment_intent["amount"],
            amount_captured=payment_intent["amount"] if succeeded else 0,
            captured=succeeded,
            paid=succeeded,
            status="succeeded" if succeeded else "failed",
            created=self.now,
            currency=payment_intent["currency"],
            customer=payment_intent["customer"],
            payment_intent=payment_intent["id"],
            payment_method=payment_intent["payment_method"],
            balance_transaction=self.new_id("txn") if succeeded else None,
            failure_code=None if succeeded else "card_declined",
            failure_message=None if succeeded else _DECLINE_MESSAGES.get(str(decline_code)),
            receipt_url=None,
            source=None,
            transfer_data=None,
            description=payment_intent["description"],
        )
        charge["outcome"].update(
            type="authorized" if succeeded else "issuer_declined",
            network_status="approved_by_network" if succeeded else "declined_by_network",
            reason=decline_code,
            seller_message="Payment complete." if succeeded else "The bank declined the payment.",
        )
        charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
        self.charges[charge["id"]] = charge
        return charge

    # --- paying invoices ---------------------------------------------------------------

    def _payment_intent_of(self, invoice: StripeObject) -> StripeObject | None:
        for invoice_payment in self.invoice_payments.values():
            if invoice_payment["invoice"] == invoice["id"] and invoice_payment["is_default"]:
                return self.payment_intents[invoice_payment["payment"]["payment_intent"]]
        return None

    def _attempt(self, invoice: StripeObject, payment_method_id: str | None) -> str:
        """Confirm the invoice's payment intent with this card; returns the intent's status."""
        payment_intent = self._payment_intent_of(invoice)
        if payment_intent is None:  # nothing to pay
            return "succeeded"
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        if payment_method_id is None:
            return str(payment_intent["status"])
        payment_intent["payment_method"] = payment_method_id
        status, decline_code = self.card_outcomes.get(payment_method_id) or card_outcome(
            payment_method_id
        )
        payment_intent.update(status=status, last_payment_error=None, next_action=None)
        if status == "requires_action":
            payment_intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            return status
        charge = self._new_charge(payment_intent, decline_code)
        payment_intent["latest_charge"] = charge["id"]
        if decline_code is not None:
            payment_intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": _DECLINE_MESSAGES[decline_code],
                "charge": charge["id"],
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "payment_method": copy.deepcopy(self.payment_methods.get(payment_method_id)),
            }
            return status
        self._mark_paid(invoice)
        return status

    def _mark_paid(self, invoice: StripeObject) -> None:
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = self.now
        payment_intent = self._payment_intent_of(invoice)
        if payment_intent is not None:
            payment_intent.update(
                status="succeeded",
                amount_received=payment_intent["amount"],
                last_payment_error=None,
                next_action=None,
            )
            for invoice_payment in self.invoice_payments.values():
                if invoice_payment["invoice"] == invoice["id"]:
                    invoice_payment.update(status="paid", amount_paid=invoice["amount_due"])
                    invoice_payment["status_transitions"]["paid_at"] = self.now
        subscription = self.subscriptions.get(self._subscription_id_of(invoice) or "")
        if subscription is None:
            return
        pending = self._pending.get(subscription["id"])
        if pending is not None and pending[0] == invoice["id"]:
            del self._pending[subscription["id"]]
            self._apply_items(subscription, pending[1])
            subscription["metadata"] = merge_metadata(subscription["metadata"], pending[2])
            subscription["pending_update"] = None
        if subscription["status"] in ("incomplete", "past_due", "unpaid"):
            subscription["status"] = "active"
        payment_method = payment_intent["payment_method"] if payment_intent else None
        saves = (subscription.get("payment_settings") or {}).get("save_default_payment_method")
        if payment_method and saves == "on_subscription":
            subscription["default_payment_method"] = payment_method

    def _apply_items(self, subscription: StripeObject, desired: list[StripeObject]) -> None:
        """The items take effect; a new interval resets the billing cycle anchor to now
        (Stripe: "changing the billing interval resets the billing cycle anchor")."""
        before = {item["price"]["recurring"]["interval"] for item in subscription["items"]["data"]}
        after = {item["price"]["recurring"]["interval"] for item in desired}
        subscription["items"]["data"] = desired
        if before and after and before != after:
            subscription["billing_cycle_anchor"] = min(
                item["current_period_start"] for item in desired
            )

    def _charge_card(self, subscription: StripeObject) -> str | None:
        default = subscription.get("default_payment_method")
        return str(default) if default else self.default_payment_method_of(subscription["customer"])

    def pay_invoice_out_of_band(self, invoice_id: str) -> StripeObject:
        """The customer completed SCA (or paid another way): the invoice is paid."""
        invoice = self.invoice(invoice_id)
        if invoice["status"] != "paid":
            self._mark_paid(invoice)
        return invoice

    def _pay_invoice(self, params: Params, invoice_id: str) -> StripeObject:
        invoice = self.invoice(invoice_id)
        if invoice["status"] == "paid":
            raise invalid_request("Invoice is already paid.", code="invoice_already_paid")
        if invoice["status"] != "open":
            raise invalid_request(f"You cannot pay an invoice that is {invoice['status']}.")
        if params.get("payment_method"):
            payment_method = self.payment_method(params["payment_method"], status=400)
            payment_method_id: str | None = payment_method["id"]
        else:
            subscription = self.subscriptions.get(self._subscription_id_of(invoice) or "")
            payment_method_id = (
                self._charge_card(subscription)
                if subscription
                else self.default_payment_method_of(invoice["customer"])
            )
        if payment_method_id is None:
            raise invalid_request(
                "This customer has no attached payment source or default payment method."
            )
        self.payment_attempts.append((invoice_id, "pay"))
        status = self._attempt(invoice, payment_method_id)
        if status == "succeeded":
            return invoice
        raise self._payment_error(invoice)

    def _payment_error(self, invoice: StripeObject) -> StripeApiError:
        payment_intent = self._payment_intent_of(invoice) or {}
        rendered = self.render(payment_intent, [])
        if payment_intent.get("status") == "requires_action":
            return card_error(
                _REQUIRES_ACTION_MESSAGE,
                code="invoice_payment_intent_requires_action",
                payment_intent=rendered,
            )
        error = payment_intent.get("last_payment_error") or {}
        decline_code = error.get("decline_code")
        return card_error(
            _DECLINE_MESSAGES.get(str(decline_code), "Your card was declined."),
            code="card_declined",
            decline_code=decline_code,
            payment_intent=rendered,
        )
