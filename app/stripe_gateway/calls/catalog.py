"""Products and prices of the catalog."""

from app.stripe_gateway.calls.base import SAAS_TAX_CODE, Params, StripeCalls, plain
from app.stripe_gateway.parsing import parse_price, parse_product
from app.stripe_gateway.translation import translated_errors
from app.stripe_gateway.types import PriceState, ProductState


class CatalogCalls(StripeCalls):
    async def retrieve_product(self, product_id: str) -> ProductState | None:
        product = await self._retrieve_or_none(self._stripe.products, product_id)
        return parse_product(product) if product is not None else None

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
        async with translated_errors():
            product = plain(
                await self._stripe.products.create_async(params, self._options(idempotency_key))
            )
        return parse_product(product)

    async def update_product(
        self, *, product_id: str, name: str, description: str, active: bool, idempotency_key: str
    ) -> ProductState:
        params: Params = {"name": name, "active": active, "tax_code": SAAS_TAX_CODE}
        if description:
            params["description"] = description
        async with translated_errors():
            product = plain(
                await self._stripe.products.update_async(
                    product_id, params, self._options(idempotency_key)
                )
            )
        return parse_product(product)

    async def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, PriceState]:
        async with translated_errors():
            page = plain(
                await self._stripe.prices.list_async({"lookup_keys": lookup_keys, "limit": 100})
            )
        return {price["lookup_key"]: parse_price(price) for price in page["data"]}

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
        async with translated_errors():
            price = plain(
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
        return parse_price(price)

    async def archive_price(self, *, price_id: str, idempotency_key: str) -> None:
        async with translated_errors():
            await self._stripe.prices.update_async(
                price_id, {"active": False}, self._options(idempotency_key)
            )
