"""What every group of calls shares: stripe-python's services and how an answer is read."""

from typing import Any

import stripe

from app.stripe_gateway.translation import translated_errors

# Stripe's tax code for "Software as a service (SaaS) - business use".
SAAS_TAX_CODE = "txcd_10103001"

Params = dict[str, Any]


def plain(stripe_object: Any) -> dict[str, Any]:
    """A stripe-python object as the plain dict the parsers read."""
    converted: dict[str, Any] = stripe_object.to_dict()
    return converted


class StripeCalls:
    # The typed services of stripe-python, used untyped: every answer is turned into a plain
    # dict at once and read into our own types (`parsing.py`).
    _stripe: Any
    automatic_tax: bool

    @staticmethod
    def _options(idempotency_key: str | None = None) -> Any:
        return {"idempotency_key": idempotency_key} if idempotency_key else {}

    async def _retrieve_or_none(
        self, service: Any, object_id: str, params: Params | None = None
    ) -> dict[str, Any] | None:
        """`GET` one object; None if Stripe has no such object."""
        async with translated_errors():
            try:
                found = await service.retrieve_async(object_id, params)
            except stripe.InvalidRequestError as error:
                if error.code == "resource_missing":
                    return None
                raise
        return plain(found)

    async def _every_page(self, service: Any, params: Params) -> list[dict[str, Any]]:
        """All objects of a list endpoint, in Stripe's order (newest first), 100 a page."""
        objects: list[dict[str, Any]] = []
        starting_after: str | None = None
        while True:
            page_params: Params = {**params, "limit": 100}
            if starting_after is not None:
                page_params["starting_after"] = starting_after
            async with translated_errors():
                page = await service.list_async(page_params)
            # JSON-safe: stripe-python reads decimal strings (`unit_amount_decimal`) as
            # Decimal, and an event is stored as JSON exactly as Stripe sent it.
            converted: dict[str, Any] = page.to_dict(for_json=True)
            data: list[dict[str, Any]] = converted["data"]
            objects.extend(data)
            if not converted.get("has_more") or not data:
                return objects
            starting_after = str(data[-1]["id"])
