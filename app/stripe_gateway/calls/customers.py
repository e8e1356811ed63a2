"""Customers, their cards and setup intents."""

from app.stripe_gateway.calls.base import Params, StripeCalls, plain
from app.stripe_gateway.fields import expandable_id, nested
from app.stripe_gateway.parsing import parse_payment_method
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import PaymentMethodCard


def search_literal(value: str) -> str:
    """A value quoted for Stripe's search query language, where a backslash escapes a quote:
    whatever the value holds, it stays one string and cannot add a clause."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class CustomerCalls(StripeCalls):
    async def find_customer(self, *, dashboard_user_id: str) -> str | None:
        """The Stripe customer that carries this user's id in our metadata, if any.

        Never by email: an address is whatever the user typed on the dashboard, so a match
        on it would hand someone another person's customer and cards. The old module's
        customers are adopted by the operator's `billing import-stripe` instead.
        """
        query = f"metadata['dashboard_user_id']:{search_literal(dashboard_user_id)}"
        async with translated_errors():
            # Search can lag writes by a minute; it is for customers made long ago. Our own
            # creation is protected by its idempotency key instead.
            found = plain(await self._stripe.customers.search_async({"query": query, "limit": 1}))
        return str(found["data"][0]["id"]) if found["data"] else None

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
        async with translated_errors():
            customer = plain(
                await self._stripe.customers.create_async(params, self._options(idempotency_key))
            )
        return str(customer["id"])

    # --- payment methods ---------------------------------------------------------------

    async def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodCard:
        async with translated_errors(about_payment_method=True):
            payment_method = plain(
                await self._stripe.payment_methods.retrieve_async(payment_method_id)
            )
        return parse_payment_method(payment_method)

    async def find_payment_method(self, payment_method_id: str) -> PaymentMethodCard | None:
        """A payment method as Stripe holds it now; None if Stripe has no such one."""
        payment_method = await self._retrieve_or_none(
            self._stripe.payment_methods, payment_method_id
        )
        return parse_payment_method(payment_method) if payment_method is not None else None

    async def attach_payment_method(
        self, *, payment_method_id: str, customer_id: str, idempotency_key: str
    ) -> PaymentMethodCard:
        async with translated_errors(about_payment_method=True):
            payment_method = plain(
                await self._stripe.payment_methods.attach_async(
                    payment_method_id, {"customer": customer_id}, self._options(idempotency_key)
                )
            )
        return parse_payment_method(payment_method)

    async def detach_payment_method(self, *, payment_method_id: str, idempotency_key: str) -> None:
        async with translated_errors(about_payment_method=True):
            await self._stripe.payment_methods.detach_async(
                payment_method_id, options=self._options(idempotency_key)
            )

    async def set_default_payment_method(
        self, *, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> None:
        async with translated_errors():
            await self._stripe.customers.update_async(
                customer_id,
                {"invoice_settings": {"default_payment_method": payment_method_id}},
                self._options(idempotency_key),
            )

    async def list_payment_methods(self, *, customer_id: str) -> list[PaymentMethodCard]:
        async with translated_errors():
            page = plain(
                await self._stripe.payment_methods.list_async(
                    {"customer": customer_id, "type": "card", "limit": 100}
                )
            )
        return [parse_payment_method(payment_method) for payment_method in page["data"]]

    async def default_payment_method_id(self, *, customer_id: str) -> str | None:
        async with translated_errors():
            customer = plain(await self._stripe.customers.retrieve_async(customer_id))
        return expandable_id(nested(customer, "invoice_settings", "default_payment_method"))

    async def create_setup_intent(self, *, customer_id: str, idempotency_key: str) -> str:
        async with translated_errors():
            setup_intent = plain(
                await self._stripe.setup_intents.create_async(
                    {
                        "customer": customer_id,
                        "usage": "off_session",
                        # Cards only: the service mirrors brand, last4 and expiry. The pinned
                        # API version names this `allowed_payment_method_types` (it refuses
                        # the older `payment_method_types`).
                        "allowed_payment_method_types": ["card"],
                    },
                    self._options(idempotency_key),
                )
            )
        return str(setup_intent["client_secret"])
