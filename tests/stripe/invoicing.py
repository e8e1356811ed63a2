"""Invoice items, one-off invoices, finalizing, and a subscription's renewal draft.

What the overage billing relies on, as Stripe documents it:
- an invoice item created with `invoice=` goes on that invoice, which must be a draft (400
  otherwise); without it the item is pending, and the subscription's next invoice takes it
  (an item naming a subscription is taken only by that subscription's invoices);
- a renewal invoice starts as a draft (`renew_subscription`, called by a test where Stripe
  would renew) and is finalized about an hour later (`finalize_invoice`, by the test);
- a subscription with `pending_invoice_item_interval` has its pending items invoiced on their
  own every interval (`invoice_pending_items`, called by a test at the subscription's
  `next_pending_invoice_item_invoice`), between the renewals of a longer cycle;
- an invoice created through the API (`POST /v1/invoices`) is a draft holding no pending item
  unless `pending_invoice_items_behavior=include`; `POST /v1/invoices/{id}/finalize` opens it.

Simplification: a finalized invoice is left `open`; Stripe's automatic collection runs when a
test says so (`collect_automatically` for the attempt at finalization, `run_stripe_retries`
for Stripe's own retry schedule, `STRIPE_RETRY_SCHEDULE_DAYS` after each failure), and only
while the invoice's `auto_advance` is on: `POST /v1/invoices/{id}` with `auto_advance=false`
stops it (and clears `next_payment_attempt`), as Stripe documents. Every attempt, Stripe's or
through `POST /v1/invoices/{id}/pay`, is in `payment_attempts`.

For invoice documents, `add_invoice` stores a finished invoice of any lines, discounts and
taxes (`new_line`, `add_coupon_discount`, `add_tax_rate`, `add_account_tax_id`); retrieving it
embeds its first `EMBEDDED_LINES` lines and `GET /v1/invoices/{id}/lines` pages them all.
"""

import copy
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tests.stripe.fixtures import stripe_fixture
from tests.stripe.payments import item_amount, period_end
from tests.stripe.schedules import FakeSchedules
from tests.stripe.wire import (
    Params,
    StripeObject,
    as_bool,
    as_int,
    check_params,
    invalid_request,
    list_object,
    merge_metadata,
    resource_missing,
)

_INVOICE_ITEM_PARAMS = {
    "amount",
    "currency",
    "customer",
    "description",
    "discountable",
    "expand",
    "invoice",
    "metadata",
    "period",
    "subscription",
    "tax_behavior",
    "tax_code",
}
_INVOICE_PARAMS = {
    "auto_advance",
    "automatic_tax",
    "collection_method",
    "currency",
    "customer",
    "description",
    "expand",
    "metadata",
    "pending_invoice_items_behavior",
    "subscription",
}
# Stripe's default custom retry schedule for failed subscription payments ("retry 3 days
# after the previous attempt, then 5, then 7"); after the last, the subscription is canceled
# (the dashboard's default "if all retries fail" setting).
STRIPE_RETRY_SCHEDULE_DAYS = (3, 5, 7)
# How many lines a retrieved invoice embeds (Stripe: "the first handful").
EMBEDDED_LINES = 10
_MAX_PAGE = 100


class FakeInvoicing(FakeSchedules):
    def __init__(self, now: int) -> None:
        super().__init__(now)
        self.invoice_items: dict[str, StripeObject] = {}

    # --- test helpers ------------------------------------------------------------------

    def renew_subscription(
        self, subscription_id: str, *, billing_reason: str = "subscription_cycle"
    ) -> StripeObject:
        """What Stripe does at a period end: the items move to the next period and a draft
        invoice bills it, taking the subscription's pending items. Returns the draft."""
        subscription = self.subscription(subscription_id)
        items = subscription["items"]["data"]
        previous_start = min(item["current_period_start"] for item in items)
        boundary = min(item["current_period_end"] for item in items)
        items = self._start_scheduled_phase(subscription, boundary)
        for item in items:
            interval = item["price"]["recurring"]["interval"]
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] = period_end(
                item["current_period_start"], interval, anchor=subscription["billing_cycle_anchor"]
            )
        lines = [
            self._line(
                item,
                item_amount(item),
                proration=False,
                start=item["current_period_start"],
                end=item["current_period_end"],
            )
            for item in items
        ]
        invoice = self._invoice_object(subscription, lines, billing_reason)
        invoice.update(
            status="draft",
            number=None,
            hosted_invoice_url=None,
            invoice_pdf=None,
            auto_advance=True,
            automatically_finalizes_at=self.now + 3600,
            # A renewal's own period is the one just ended: the window its pending items
            # were collected in.
            period_start=previous_start,
            period_end=boundary,
        )
        invoice["status_transitions"].update(finalized_at=None, paid_at=None)
        self.invoices[invoice["id"]] = invoice
        for item in list(self.invoice_items.values()):
            owner = ((item.get("parent") or {}).get("subscription_details") or {}).get(
                "subscription"
            )
            if (
                item["invoice"] is None
                and item["customer"] == subscription["customer"]
                and owner in (None, subscription_id)
            ):
                self._attach(invoice, item)
        subscription["latest_invoice"] = invoice["id"]
        return invoice

    def invoice_pending_items(self, subscription_id: str) -> StripeObject | None:
        """What Stripe does at a subscription's `next_pending_invoice_item_invoice`: Stripe
        documents `pending_invoice_item_interval` as "how often to bill for any pending
        invoice items ... analogous to calling Create an invoice for the given subscription at
        the specified interval", so this is that invoice (a draft of the subscription's
        pending items, `billing_reason=manual` as an API-created one is, finalized about an
        hour later) and the next one is due an interval later; with nothing pending there is
        no invoice. Refused (Stripe would not do it) without an interval or before it is due.
        Returns the draft, if any."""
        subscription = self.subscription(subscription_id)
        interval = subscription.get("pending_invoice_item_interval")
        due = subscription.get("next_pending_invoice_item_invoice")
        if not interval or due is None or self.now < due:
            raise AssertionError(
                f"{subscription_id} has no pending items invoice due (interval {interval}, "
                f"due {due}, now {self.now})"
            )
        subscription["next_pending_invoice_item_invoice"] = period_end(
            due, interval["interval"], interval["interval_count"]
        )
        pending = [
            item
            for item in self.invoice_items.values()
            if item["invoice"] is None
            and ((item.get("parent") or {}).get("subscription_details") or {}).get("subscription")
            == subscription_id
        ]
        if not pending:
            return None
        invoice = self._invoice_object(subscription, [], "manual")
        invoice.update(
            status="draft",
            number=None,
            hosted_invoice_url=None,
            invoice_pdf=None,
            auto_advance=True,
            automatically_finalizes_at=self.now + 3600,
            period_start=self.now,
            period_end=self.now,
        )
        invoice["status_transitions"].update(finalized_at=None, paid_at=None)
        self.invoices[invoice["id"]] = invoice
        for item in pending:
            self._attach(invoice, item)
        subscription["latest_invoice"] = invoice["id"]
        return invoice

    def _start_scheduled_phase(self, subscription: StripeObject, boundary: int) -> list[Any]:
        """At a period end, an active schedule's phase starting there takes over: its prices
        and quantities become the items (an item of the same product keeps its id); the
        last phase of a schedule with `end_behavior=release` releases the subscription."""
        items: list[Any] = subscription["items"]["data"]
        schedule = self.schedules.get(subscription.get("schedule") or "")
        if schedule is None or schedule["status"] != "active":
            return items
        phases = schedule["phases"]
        upcoming = next((p for p in phases if p["start_date"] == boundary), None)
        if upcoming is None:
            return items
        by_product = {item["price"]["product"]: item for item in items}
        desired = []
        for spec in upcoming["items"]:
            price = self.prices[spec["price"]]
            item = by_product.get(price["product"])
            if item is None:
                item = self._new_item(subscription["id"], price, 1, boundary, boundary)
            else:
                self._set_price(item, price)
            item["quantity"] = spec.get("quantity") or 1
            item["current_period_end"] = boundary
            desired.append(item)
        if {i["price"]["recurring"]["interval"] for i in desired} != {
            i["price"]["recurring"]["interval"] for i in items
        }:
            subscription["billing_cycle_anchor"] = boundary
        subscription["items"]["data"] = desired
        if upcoming is phases[-1] and schedule.get("end_behavior") == "release":
            subscription["schedule"] = None
            schedule.update(
                status="released",
                released_at=boundary,
                released_subscription=subscription["id"],
                subscription=None,
            )
        return desired

    def finalize_invoice(self, invoice_id: str) -> StripeObject:
        """Stripe finalizing a draft (the hour after a renewal, or on request)."""
        return self._finalize_invoice({}, invoice_id)

    def collect_automatically(self, invoice_id: str) -> str:
        """Stripe's own attempt at an open invoice (at finalization, or when its
        `next_payment_attempt` comes): `paid`, `failed`, or `skipped` when the invoice is not
        open or its `auto_advance` is off. A failure schedules the next attempt of Stripe's
        retry schedule; after the last one Stripe cancels the subscription."""
        invoice = self.invoice(invoice_id)
        if invoice["status"] != "open" or not invoice.get("auto_advance"):
            return "skipped"
        subscription = self.subscriptions.get(self._subscription_id_of(invoice) or "")
        payment_method_id = (
            self._charge_card(subscription)
            if subscription
            else self.default_payment_method_of(invoice["customer"])
        )
        self.payment_attempts.append((invoice_id, "stripe_automatic"))
        if self._attempt(invoice, payment_method_id) == "succeeded":
            invoice["next_payment_attempt"] = None
            return "paid"
        failures = invoice["attempt_count"]
        if failures <= len(STRIPE_RETRY_SCHEDULE_DAYS):
            delay = STRIPE_RETRY_SCHEDULE_DAYS[failures - 1] * 86_400
            invoice["next_payment_attempt"] = self.now + delay
            if subscription is not None and subscription["status"] == "active":
                subscription["status"] = "past_due"
        else:
            invoice["next_payment_attempt"] = None
            if subscription is not None:
                subscription.update(status="canceled", canceled_at=self.now, ended_at=self.now)
        return "failed"

    def run_stripe_retries(self) -> list[str]:
        """Stripe's retry schedule up to `now`: every open invoice whose automatic collection
        is on and whose `next_payment_attempt` has come is attempted. Returns their ids."""
        due = [
            invoice["id"]
            for invoice in self.invoices.values()
            if invoice["status"] == "open"
            and invoice.get("auto_advance")
            and invoice.get("next_payment_attempt") is not None
            and invoice["next_payment_attempt"] <= self.now
        ]
        for invoice_id in due:
            self.collect_automatically(invoice_id)
        return due

    def _update_invoice(self, params: Params, invoice_id: str) -> StripeObject:
        check_params(params, {"auto_advance", "expand", "metadata"}, "POST /v1/invoices/{id}")
        invoice = self.invoice(invoice_id)
        if "auto_advance" in params:
            invoice["auto_advance"] = as_bool(params["auto_advance"])
            if not invoice["auto_advance"]:
                invoice["next_payment_attempt"] = None
        if "metadata" in params:
            invoice["metadata"] = merge_metadata(invoice["metadata"], params["metadata"])
        return self.render(invoice, params.get("expand") or [])

    def _mark_invoice_uncollectible(self, params: Params, invoice_id: str) -> StripeObject:
        check_params(params, {"expand"}, "POST /v1/invoices/{id}/mark_uncollectible")
        invoice = self.invoice(invoice_id)
        if invoice["status"] != "open":
            raise invalid_request(f"You cannot mark an invoice that is {invoice['status']}.")
        invoice.update(status="uncollectible", auto_advance=False, next_payment_attempt=None)
        invoice["status_transitions"]["marked_uncollectible_at"] = self.now
        return self.render(invoice, params.get("expand") or [])

    def new_line(
        self,
        amount: int,
        *,
        description: str,
        quantity: int = 1,
        unit_amount_decimal: str | None = None,
        price: str | None = None,
        proration: bool = False,
        period: tuple[int, int] | None = None,
        metadata: dict[str, str] | None = None,
        currency: str = "usd",
    ) -> StripeObject:
        """A line for `add_invoice`: a subscription item's (with `price`) or an invoice
        item's (without), in the pinned version's shape."""
        start, end = period or (self.now, self.now)
        line = stripe_fixture("line_item")
        details = {
            "invoice_item": None if price else self.new_id("ii"),
            "proration": proration,
            "proration_details": {"credited_items": None},
            "subscription": None,
        }
        line.update(
            id=self.new_id("il"),
            amount=amount,
            subtotal=amount,
            currency=currency,
            description=description,
            discountable=not proration,
            metadata=dict(metadata or {}),
            period={"start": start, "end": end},
            quantity=quantity,
            parent={
                "type": "subscription_item_details" if price else "invoice_item_details",
                "invoice_item_details": None if price else details,
                "subscription_item_details": {**details, "subscription_item": "si_fake"}
                if price
                else None,
            },
            pricing={
                "type": "price_details",
                "price_details": {"price": price, "product": "prod_fake"} if price else None,
                "unit_amount_decimal": unit_amount_decimal
                if unit_amount_decimal is not None
                else str(Decimal(amount) / quantity),
            },
        )
        return line

    def add_tax_rate(
        self, *, display_name: str, percentage: float, jurisdiction: str | None = None
    ) -> StripeObject:
        tax_rate = stripe_fixture("tax_rate")
        tax_rate.update(
            id=self.new_id("txr"),
            created=self.now,
            display_name=display_name,
            description=None,
            percentage=percentage,
            effective_percentage=percentage,
            jurisdiction=jurisdiction,
            country=None,
            inclusive=False,
            flat_amount=None,
        )
        self.tax_rates[tax_rate["id"]] = tax_rate
        return tax_rate

    def add_coupon_discount(
        self, *, customer: str, name: str, percent_off: float | None = None
    ) -> StripeObject:
        """A coupon and its discount, applied to `customer`."""
        coupon = stripe_fixture("coupon")
        coupon.update(id=self.new_id("coupon"), name=name, percent_off=percent_off)
        self.coupons[coupon["id"]] = coupon
        discount = stripe_fixture("discount")
        discount.update(
            id=self.new_id("di"),
            customer=customer,
            start=self.now,
            end=None,
            source={"coupon": coupon["id"], "type": "coupon"},
        )
        self.discounts[discount["id"]] = discount
        return discount

    def add_account_tax_id(self, *, value: str, type: str = "eu_vat") -> StripeObject:
        tax_id = stripe_fixture("tax_id")
        tax_id.update(id=self.new_id("txi"), type=type, value=value, customer=None)
        tax_id["owner"] = {"type": "self", "customer": None, "customer_account": None}
        self.tax_ids[tax_id["id"]] = tax_id
        return tax_id

    def add_invoice(
        self,
        *,
        customer: str,
        lines: list[StripeObject],
        status: str = "open",
        number: str | None = "FAKE-0001",
        discounts: Sequence[tuple[StripeObject, int]] = (),
        taxes: Sequence[tuple[StripeObject, int, int]] = (),
        **fields: Any,
    ) -> StripeObject:
        """A finished invoice of these lines, stored as Stripe would hold it: totals computed
        from the lines, the discounts (discount, amount) and the exclusive taxes (tax rate,
        amount, taxable amount); paid in full when `status` is "paid"."""
        invoice = stripe_fixture("invoice")
        invoice.pop("subscription", None)  # gone since basil
        identifier = fields.pop("id", None) or self.new_id("in")
        customer_object = self.customers.get(customer) or {}
        subtotal = sum(int(line["amount"]) for line in lines)
        discounted = sum(amount for _, amount in discounts)
        taxed = sum(amount for _, amount, _ in taxes)
        total = subtotal - discounted + taxed
        paid = status == "paid"
        invoice.update(
            id=identifier,
            created=self.now,
            effective_at=self.now,
            customer=customer,
            customer_email=customer_object.get("email"),
            customer_name=customer_object.get("name"),
            customer_tax_ids=[],
            account_tax_ids=None,
            currency=lines[0]["currency"] if lines else "usd",
            billing_reason="subscription_cycle",
            status=status,
            number=number,
            description=None,
            metadata={},
            due_date=None,
            from_invoice=None,
            last_finalization_error=None,
            next_payment_attempt=None,
            shipping_cost=None,
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal,
            total_excluding_tax=subtotal - discounted,
            total=total,
            amount_due=max(total, 0),
            amount_paid=max(total, 0) if paid else 0,
            amount_remaining=0 if paid else max(total, 0),
            amount_overpaid=0,
            starting_balance=0,
            hosted_invoice_url=f"https://invoice.stripe.com/i/fake/{identifier}",
            invoice_pdf=None,
            period_start=self.now,
            period_end=self.now,
            discounts=[discount["id"] for discount, _ in discounts],
            total_discount_amounts=[
                {"amount": amount, "discount": discount["id"]} for discount, amount in discounts
            ],
            total_taxes=[
                {
                    "amount": amount,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": {"tax_rate": tax_rate["id"]},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for tax_rate, amount, taxable in taxes
            ]
            or None,
            parent=None,
        )
        for line in lines:
            line["invoice"] = identifier
        invoice["lines"] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": f"/v1/invoices/{identifier}/lines",
        }
        invoice["status_transitions"].update(
            finalized_at=None if status == "draft" else self.now,
            paid_at=self.now if paid else None,
            voided_at=self.now if status == "void" else None,
        )
        invoice.update(fields)
        self.invoices[identifier] = invoice
        return invoice

    def _list_invoice_lines(self, params: Params, invoice_id: str) -> StripeObject:
        check_params(params, {"limit", "starting_after", "expand"}, "GET /v1/invoices/{id}/lines")
        lines = self.invoice(invoice_id)["lines"]["data"]
        limit = as_int(params.get("limit"), 10) or 10
        if not 1 <= limit <= _MAX_PAGE:
            raise invalid_request("limit must be between 1 and 100.", param="limit")
        start = 0
        if params.get("starting_after"):
            ids = [line["id"] for line in lines]
            if params["starting_after"] not in ids:
                raise resource_missing(
                    "line_item", params["starting_after"], param="starting_after"
                )
            start = ids.index(params["starting_after"]) + 1
        page = lines[start : start + limit]
        return {
            "object": "list",
            "url": f"/v1/invoices/{invoice_id}/lines",
            "has_more": start + limit < len(lines),
            "data": page,
        }

    def _get_tax_rate(self, params: Params, tax_rate_id: str) -> StripeObject:
        if tax_rate_id not in self.tax_rates:
            raise resource_missing("tax_rate", tax_rate_id)
        return self.tax_rates[tax_rate_id]

    # --- invoice items -----------------------------------------------------------------

    def _create_invoice_item(self, params: Params) -> StripeObject:
        check_params(params, _INVOICE_ITEM_PARAMS, "POST /v1/invoiceitems")
        customer = self.customer(params.get("customer"), param="customer", status=400)
        amount = as_int(params.get("amount"))
        if amount is None:
            raise invalid_request(
                "FakeStripe models invoice items with `amount` only.", param="amount"
            )
        invoice = None
        if params.get("invoice"):
            invoice = self.invoices.get(params["invoice"])
            if invoice is None:
                raise resource_missing("invoice", params["invoice"], param="invoice", status=400)
            if invoice["status"] != "draft":
                raise invalid_request(
                    f"Invoice `{invoice['id']}` is not a draft: you can only add invoice "
                    "items to draft invoices.",
                    param="invoice",
                )
        subscription_id = params.get("subscription") or None
        if subscription_id:
            self.subscription(subscription_id, param="subscription")
        period = params.get("period") or {}
        item = stripe_fixture("invoiceitem")
        item.update(
            id=self.new_id("ii"),
            amount=amount,
            currency=params.get("currency") or "usd",
            customer=customer["id"],
            date=self.now,
            description=params.get("description"),
            discountable=as_bool(params.get("discountable", "true")) and amount >= 0,
            invoice=None,
            metadata=merge_metadata({}, params.get("metadata")),
            period={
                "start": as_int(period.get("start"), self.now),
                "end": as_int(period.get("end"), self.now),
            },
            proration=False,
            quantity=1,
            quantity_decimal="1",
            net_amount=amount,
            parent={
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription_id},
            }
            if subscription_id
            else None,
            pricing={"type": "price_details", "unit_amount_decimal": str(amount)},
        )
        self.invoice_items[item["id"]] = item
        if invoice is not None:
            self._attach(invoice, item)
        return item

    def _list_invoice_items(self, params: Params) -> StripeObject:
        pending = params.get("pending")
        created = params.get("created") or {}
        if not isinstance(created, dict) or set(created) - {"gte"}:
            raise invalid_request("FakeStripe models `created[gte]` only.", param="created")
        since = as_int(created.get("gte"), 0) or 0
        found = [
            item
            for item in reversed(self.invoice_items.values())
            if (not params.get("customer") or item["customer"] == params["customer"])
            and (not params.get("invoice") or item["invoice"] == params["invoice"])
            and (pending in (None, "") or (item["invoice"] is None) == as_bool(pending))
            and item["date"] >= since
        ]
        return list_object("/v1/invoiceitems", found, params)

    def _attach(self, invoice: StripeObject, item: StripeObject) -> None:
        """An item goes on an invoice as a line carrying the item's metadata."""
        item["invoice"] = invoice["id"]
        subscription_id = ((item.get("parent") or {}).get("subscription_details") or {}).get(
            "subscription"
        )
        line = stripe_fixture("line_item")
        line.update(
            id=self.new_id("il"),
            amount=item["amount"],
            subtotal=item["amount"],
            currency=item["currency"],
            description=item["description"],
            discountable=item["discountable"],
            invoice=invoice["id"],
            metadata=copy.deepcopy(item["metadata"]),
            period=copy.deepcopy(item["period"]),
            quantity=1,
            subscription=subscription_id,
            parent={
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription_id,
                },
                "subscription_item_details": None,
            },
            pricing={"type": "price_details", "unit_amount_decimal": str(item["amount"])},
        )
        invoice["lines"]["data"].append(line)
        total = sum(int(line["amount"]) for line in invoice["lines"]["data"])
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=max(total, 0),
            amount_remaining=max(total, 0),
        )

    # --- invoices ----------------------------------------------------------------------

    def _create_invoice(self, params: Params) -> StripeObject:
        check_params(params, _INVOICE_PARAMS, "POST /v1/invoices")
        customer = self.customer(params.get("customer"), param="customer", status=400)
        subscription_id = params.get("subscription") or None
        subscription = (
            self.subscription(subscription_id, param="subscription") if subscription_id else None
        )
        invoice = stripe_fixture("invoice")
        invoice.pop("subscription", None)
        identifier = self.new_id("in")
        invoice.update(
            id=identifier,
            created=self.now,
            effective_at=None,
            customer=customer["id"],
            customer_email=customer.get("email"),
            customer_name=customer.get("name"),
            currency=params.get("currency") or "usd",
            billing_reason="manual",
            collection_method=params.get("collection_method") or "charge_automatically",
            auto_advance=as_bool(params.get("auto_advance")),
            automatically_finalizes_at=None,
            description=params.get("description"),
            metadata=merge_metadata({}, params.get("metadata")),
            status="draft",
            number=None,
            hosted_invoice_url=None,
            invoice_pdf=None,
            amount_due=0,
            amount_paid=0,
            amount_remaining=0,
            amount_overpaid=0,
            subtotal=0,
            subtotal_excluding_tax=0,
            total=0,
            total_excluding_tax=0,
            attempt_count=0,
            attempted=False,
            due_date=None,
            from_invoice=None,
            last_finalization_error=None,
            next_payment_attempt=None,
            period_start=self.now,
            period_end=self.now,
            shipping_cost=None,
            shipping_details=None,
            webhooks_delivered_at=None,
            parent={
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": subscription_id},
            }
            if subscription
            else None,
            lines={
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/invoices/{identifier}/lines",
            },
        )
        invoice["automatic_tax"]["enabled"] = as_bool(
            (params.get("automatic_tax") or {}).get("enabled")
        )
        invoice["status_transitions"].update(finalized_at=None, paid_at=None)
        self.invoices[identifier] = invoice
        if params.get("pending_invoice_items_behavior") == "include":
            for item in list(self.invoice_items.values()):
                owner = ((item.get("parent") or {}).get("subscription_details") or {}).get(
                    "subscription"
                )
                # With `subscription`, only that subscription's pending items (Stripe's docs).
                if (
                    item["invoice"] is None
                    and item["customer"] == customer["id"]
                    and (subscription_id is None or owner == subscription_id)
                ):
                    self._attach(invoice, item)
        return invoice

    def _finalize_invoice(self, params: Params, invoice_id: str) -> StripeObject:
        check_params(params, {"auto_advance", "expand"}, "POST /v1/invoices/{id}/finalize")
        invoice = self.invoice(invoice_id)
        if invoice["status"] != "draft":
            raise invalid_request(f"This invoice is already {invoice['status']}.")
        if "auto_advance" in params:
            invoice["auto_advance"] = as_bool(params["auto_advance"])
        invoice["number"] = f"FAKE-{len(self.invoices):04d}"
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = self.now
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/fake/{invoice_id}"
        invoice["automatically_finalizes_at"] = None
        if invoice["amount_due"] > 0:
            payment_intent = self._new_payment_intent(invoice)
            invoice["confirmation_secret"] = {
                "client_secret": payment_intent["client_secret"],
                "type": "payment_intent",
            }
        else:
            self._mark_paid(invoice)
        return invoice
