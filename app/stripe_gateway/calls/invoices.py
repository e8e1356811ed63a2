"""Invoices: the documents' details, and the items and one-off invoices of overage."""

from datetime import datetime
from typing import Any

from app.stripe_gateway.calls.base import SAAS_TAX_CODE, Params, StripeCalls, plain
from app.stripe_gateway.errors import PaymentDeclined
from app.stripe_gateway.invoice_details import (
    INVOICE_DOCUMENT_EXPANSIONS,
    parse_invoice_details,
    tax_rate_ids,
)
from app.stripe_gateway.parsing import parse_invoice, parse_invoice_item
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import (
    InvoiceCollection,
    InvoiceDetails,
    InvoiceItemState,
    InvoiceState,
)


class InvoiceCalls(StripeCalls):
    async def retrieve_invoice_details(self, invoice_id: str) -> InvoiceDetails | None:
        """An invoice with every line, its discounts (named by their coupons) and its taxes
        (named by their tax rates); None if Stripe has no such invoice.

        An invoice embeds only its first lines (`lines.has_more`); the rest are paged from
        `GET /v1/invoices/{id}/lines`, 100 at a time, after the last embedded one."""
        invoice = await self._retrieve_or_none(
            self._stripe.invoices, invoice_id, {"expand": INVOICE_DOCUMENT_EXPANSIONS}
        )
        if invoice is None:
            return None
        embedded = invoice.get("lines") or {}
        lines: list[dict[str, Any]] = list(embedded.get("data") or [])
        has_more = bool(embedded.get("has_more"))
        async with translated_errors():
            while has_more and lines:
                page = plain(
                    await self._stripe.invoices.line_items.list_async(
                        invoice_id, {"limit": 100, "starting_after": str(lines[-1]["id"])}
                    )
                )
                data: list[dict[str, Any]] = page.get("data") or []
                lines.extend(data)
                has_more = bool(page.get("has_more")) and bool(data)
            tax_rates = {
                rate_id: plain(await self._stripe.tax_rates.retrieve_async(rate_id))
                for rate_id in tax_rate_ids(invoice)
            }
        return parse_invoice_details(invoice, lines, tax_rates)

    async def find_invoice(self, invoice_id: str) -> InvoiceState | None:
        """An invoice as Stripe holds it now; None if Stripe has no such invoice."""
        invoice = await self._retrieve_or_none(self._stripe.invoices, invoice_id)
        return parse_invoice(invoice) if invoice is not None else None

    async def list_invoices(self, *, customer_id: str) -> list[InvoiceState]:
        """A customer's invoices in every status, newest first, as Stripe holds them."""
        return [
            parse_invoice(invoice)
            for invoice in await self._every_page(self._stripe.invoices, {"customer": customer_id})
        ]

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
        async with translated_errors():
            item = plain(
                await self._stripe.invoice_items.create_async(
                    params, self._options(idempotency_key)
                )
            )
        return str(item["id"])

    async def list_invoice_items(
        self, *, customer_id: str, created_from: datetime | None = None
    ) -> list[InvoiceItemState]:
        """A customer's invoice items, pending or invoiced, newest first; those created at or
        after `created_from` when given."""
        params: Params = {"customer": customer_id}
        if created_from is not None:
            params["created"] = {"gte": int(created_from.timestamp())}
        return [
            parse_invoice_item(item)
            for item in await self._every_page(self._stripe.invoice_items, params)
        ]

    async def create_invoice(
        self,
        *,
        customer_id: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
        pending_items_of_subscription: str | None = None,
    ) -> str:
        """A one-off draft invoice, charged to the customer's default card once finalized;
        returns its id. It takes none of the customer's pending items, only what is added to
        it with `invoice=`, and Stripe leaves it a draft until `finalize_invoice`.

        With `pending_items_of_subscription`, it takes that subscription's pending items
        instead (and only those: Stripe's `subscription` parameter "will only include
        pending invoice items for that subscription"): the final invoice of a subscription
        that ended before its next invoice could take them."""
        params: Params = {
            "customer": customer_id,
            "collection_method": "charge_automatically",
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": description,
            "metadata": metadata,
        }
        if pending_items_of_subscription is not None:
            params["subscription"] = pending_items_of_subscription
            params["pending_invoice_items_behavior"] = "include"
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        async with translated_errors():
            invoice = plain(
                await self._stripe.invoices.create_async(params, self._options(idempotency_key))
            )
        return str(invoice["id"])

    async def finalize_invoice(self, *, invoice_id: str, idempotency_key: str) -> InvoiceState:
        """Finalize a draft and let Stripe collect it (auto_advance); the invoice as finalized."""
        async with translated_errors():
            invoice = plain(
                await self._stripe.invoices.finalize_invoice_async(
                    invoice_id, {"auto_advance": True}, self._options(idempotency_key)
                )
            )
        return parse_invoice(invoice)

    # --- dunning: the service collects a failed invoice itself ------------------------

    async def stop_automatic_collection(self, *, invoice_id: str, idempotency_key: str) -> None:
        """`auto_advance=false` on an open invoice: Stripe stops retrying it on its own
        schedule (and so never cancels the subscription over it); our retries pay it."""
        async with translated_errors():
            await self._stripe.invoices.update_async(
                invoice_id, {"auto_advance": False}, self._options(idempotency_key)
            )

    async def collect_invoice(
        self, *, invoice_id: str, payment_method_id: str | None, idempotency_key: str
    ) -> InvoiceCollection:
        """One attempt at an open invoice with `payment_method_id`, else the default card
        Stripe holds (the subscription's, else the customer's). The key names the invoice
        and the attempt, so a repeat of the same attempt is answered by Stripe with the
        first outcome."""
        current = await self.find_invoice(invoice_id)
        if current is None or current.status != "open":
            return InvoiceCollection("not_open", current.status if current else None)
        try:
            async with translated_errors():
                invoice = plain(
                    await self._stripe.invoices.pay_async(
                        invoice_id,
                        {"payment_method": payment_method_id} if payment_method_id else {},
                        self._options(idempotency_key),
                    )
                )
        except PaymentDeclined as declined:
            details = declined.details if isinstance(declined.details, dict) else {}
            if details.get("stripe_code") == "invoice_payment_intent_requires_action":
                return InvoiceCollection(
                    "action_required", "open", hosted_invoice_url=current.hosted_invoice_url
                )
            decline_code = details.get("decline_code") or details.get("stripe_code")
            return InvoiceCollection(
                "declined",
                "open",
                str(decline_code or "card_declined"),
                hosted_invoice_url=current.hosted_invoice_url,
            )
        status = str(invoice["status"])
        return InvoiceCollection(
            "paid" if status == "paid" else "declined",
            status,
            hosted_invoice_url=current.hosted_invoice_url,
        )

    async def mark_invoice_uncollectible(self, *, invoice_id: str, idempotency_key: str) -> None:
        async with translated_errors():
            await self._stripe.invoices.mark_uncollectible_async(
                invoice_id, {}, self._options(idempotency_key)
            )
