"""The fake's stores, ids, object builders and rendering (expansion), shared by its handlers.

Every object starts as a deep copy of Stripe's fixture of its resource, with the fields the fake
knows about overridden, so the untouched fields keep Stripe's shapes.
"""

import copy
from typing import Any

from tests.stripe.fixtures import stripe_fixture
from tests.stripe.wire import (
    Params,
    StripeObject,
    invalid_request,
    merge_metadata,
    resource_missing,
)

DAY = 86_400
INTERVAL_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}

# Expandable fields (an id unless expanded), by field name: the store holding the object.
_EXPANDABLE = {
    "customer": "customers",
    "default_payment_method": "payment_methods",
    "payment_method": "payment_methods",
    "latest_invoice": "invoices",
    "invoice": "invoices",
    "pending_setup_intent": "setup_intents",
    "payment_intent": "payment_intents",
    "latest_charge": "charges",
    "schedule": "schedules",
    "subscription": "subscriptions",
    "product": "products",
    "price": "prices",
    "discount": "discounts",
    "coupon": "coupons",
}
# Lists of ids that expand element by element, by field name: the store holding the objects.
_EXPANDABLE_LISTS = {"account_tax_ids": "tax_ids"}
# Includable fields: left out of responses unless expanded (Stripe's "not included by default").
_INCLUDABLE = {"invoice": {"confirmation_secret"}}
_STORE_OF_OBJECT = {
    "customer": "customers",
    "invoice": "invoices",
    "subscription": "subscriptions",
    "payment_intent": "payment_intents",
}


class FakeState:
    """State of the fake account. Objects are kept unexpanded (ids in expandable fields)."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.customers: dict[str, StripeObject] = {}
        self.payment_methods: dict[str, StripeObject] = {}
        self.setup_intents: dict[str, StripeObject] = {}
        self.subscriptions: dict[str, StripeObject] = {}
        self.invoices: dict[str, StripeObject] = {}
        self.invoice_payments: dict[str, StripeObject] = {}
        self.payment_intents: dict[str, StripeObject] = {}
        self.charges: dict[str, StripeObject] = {}
        self.schedules: dict[str, StripeObject] = {}
        self.prices: dict[str, StripeObject] = {}
        self.products: dict[str, StripeObject] = {}
        self.webhook_endpoints: dict[str, StripeObject] = {}
        self.tax_rates: dict[str, StripeObject] = {}
        self.coupons: dict[str, StripeObject] = {}
        self.discounts: dict[str, StripeObject] = {}
        self.tax_ids: dict[str, StripeObject] = {}
        account = stripe_fixture("account")
        account.update(id="acct_fake0001", email="billing@example.com", charges_enabled=True)
        account["settings"]["dashboard"]["display_name"] = "Fake Call Center"
        self.account: StripeObject = account
        self._counter = 0

    # --- ids ---------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_fake{self._counter:06d}"

    def secret_for(self, object_id: str) -> str:
        self._counter += 1
        return f"{object_id}_secret_fake{self._counter:06d}"

    # --- rendering ---------------------------------------------------------------------

    def render(self, obj: StripeObject, expand: list[str]) -> StripeObject:
        """A response body: a copy without includable fields, with `expand` paths expanded."""
        rendered: StripeObject = _without_includables(copy.deepcopy(obj))
        for path in expand:
            self._expand(rendered, path.split("."), path)
        return rendered

    def _expand(self, node: Any, parts: list[str], path: str) -> Any:
        if isinstance(node, list):
            return [self._expand(element, parts, path) for element in node]
        if not parts or not isinstance(node, dict):
            return node
        key, rest = parts[0], parts[1:]
        if key in _INCLUDABLE.get(str(node.get("object")), set()):
            stored = getattr(self, _STORE_OF_OBJECT[node["object"]]).get(node.get("id"), {})
            value = copy.deepcopy(stored.get(key))
        elif key in node:
            value = node[key]
            if isinstance(value, str):
                if key not in _EXPANDABLE:
                    raise invalid_request(f"This property cannot be expanded ({key}).")
                target = getattr(self, _EXPANDABLE[key]).get(value)
                if target is not None:
                    value = _without_includables(copy.deepcopy(target))
            elif isinstance(value, list) and key in _EXPANDABLE_LISTS:
                store = getattr(self, _EXPANDABLE_LISTS[key])
                value = [
                    copy.deepcopy(store[element])
                    if isinstance(element, str) and element in store
                    else element
                    for element in value
                ]
        else:
            raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
        node[key] = self._expand(value, rest, path)
        return node

    # --- look-ups ----------------------------------------------------------------------

    def customer(self, customer_id: Any, *, param: str = "id", status: int = 404) -> StripeObject:
        if not isinstance(customer_id, str) or customer_id not in self.customers:
            raise resource_missing("customer", str(customer_id), param=param, status=status)
        return self.customers[customer_id]

    def payment_method(
        self, payment_method_id: Any, *, param: str = "payment_method", status: int = 404
    ) -> StripeObject:
        """A known payment method; an unknown `pm_...` id is created on first use as a visa card
        with no customer, unless its id contains "missing"."""
        identifier = str(payment_method_id)
        if identifier in self.payment_methods:
            return self.payment_methods[identifier]
        if not identifier.startswith("pm_") or "missing" in identifier:
            raise resource_missing("PaymentMethod", identifier, param=param, status=status)
        return self.add_payment_method(identifier)

    def price(self, price_id: Any, *, param: str, status: int = 400) -> StripeObject:
        if not isinstance(price_id, str) or price_id not in self.prices:
            raise resource_missing("price", str(price_id), param=param, status=status)
        return self.prices[price_id]

    def default_payment_method_of(self, customer_id: str) -> str | None:
        customer = self.customers.get(customer_id) or {}
        value = (customer.get("invoice_settings") or {}).get("default_payment_method")
        return str(value) if value else None

    # --- builders (also the public `add_*` helpers of FakeStripe) ------------------------

    def add_customer(
        self,
        *,
        id: str | None = None,
        email: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> StripeObject:
        customer = stripe_fixture("customer")
        customer.update(
            id=id or self.new_id("cus"),
            created=self.now,
            email=email,
            name=None,
            metadata=dict(metadata or {}),
            discount=None,
            shipping=None,
            invoice_prefix=f"FAKE{len(self.customers) + 1:04d}",
        )
        self.customers[customer["id"]] = customer
        return customer

    def update_customer_fields(self, customer: StripeObject, params: Params) -> None:
        for field in ("email", "name", "description", "phone"):
            if field in params:
                customer[field] = params[field] or None
        if "metadata" in params:
            customer["metadata"] = merge_metadata(customer["metadata"], params["metadata"])
        settings = params.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            payment_method_id = settings["default_payment_method"] or None
            param = "invoice_settings[default_payment_method]"
            if payment_method_id is not None:
                payment_method = self.payment_method(payment_method_id, param=param, status=400)
                if payment_method["customer"] != customer["id"]:
                    raise invalid_request(
                        f"The customer does not have a payment method with the ID "
                        f"{payment_method_id}. The payment method must be attached to the "
                        f"customer.",
                        param=param,
                        code="resource_missing",
                    )
            customer["invoice_settings"]["default_payment_method"] = payment_method_id

    def add_payment_method(
        self,
        id: str,
        *,
        customer: str | None = None,
        brand: str = "visa",
        last4: str = "4242",
        exp_month: int = 12,
        exp_year: int = 2030,
    ) -> StripeObject:
        payment_method = stripe_fixture("payment_method")
        payment_method.update(id=id, created=self.now, customer=customer, metadata={})
        payment_method["billing_details"]["email"] = None
        card = payment_method["card"]
        card.update(
            brand=brand,
            display_brand=brand,
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
            fingerprint=f"fp{id[-12:]}",
            wallet=None,
            generated_from=None,
        )
        card["networks"]["available"] = [brand]
        self.payment_methods[id] = payment_method
        return payment_method

    def add_product(
        self,
        *,
        id: str,
        name: str,
        metadata: dict[str, str] | None = None,
    ) -> StripeObject:
        product = stripe_fixture("product")
        product.update(
            id=id,
            name=name,
            description=None,
            metadata=dict(metadata or {}),
            created=self.now,
            updated=self.now,
            default_price=None,
            package_dimensions=None,
            type="service",
        )
        self.products[id] = product
        return product

    def add_price(
        self,
        *,
        id: str | None = None,
        product: str,
        unit_amount: int,
        currency: str = "usd",
        interval: str = "month",
        lookup_key: str | None = None,
        active: bool = True,
    ) -> StripeObject:
        price = stripe_fixture("price")
        price.update(
            id=id or self.new_id("price"),
            product=product,
            unit_amount=unit_amount,
            unit_amount_decimal=str(unit_amount),
            currency=currency,
            lookup_key=lookup_key,
            active=active,
            created=self.now,
            transform_quantity=None,
        )
        price["recurring"].update(interval=interval, interval_count=1)
        self.prices[price["id"]] = price
        return price

    def add_webhook_endpoint(
        self, *, url: str, api_version: str | None, enabled_events: list[str]
    ) -> StripeObject:
        endpoint = stripe_fixture("webhook_endpoint")
        endpoint.update(
            id=self.new_id("we"),
            url=url,
            api_version=api_version,
            enabled_events=list(enabled_events),
            created=self.now,
            description=None,
        )
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def new_setup_intent(
        self,
        *,
        customer: str | None,
        payment_method: str | None = None,
        status: str = "requires_payment_method",
        usage: str = "off_session",
    ) -> StripeObject:
        setup_intent = stripe_fixture("setup_intent")
        identifier = self.new_id("seti")
        setup_intent.update(
            id=identifier,
            client_secret=self.secret_for(identifier),
            created=self.now,
            customer=customer,
            payment_method=payment_method,
            status=status,
            usage=usage,
            last_setup_error=None,
            next_action={"type": "use_stripe_sdk"} if status == "requires_action" else None,
            payment_method_configuration_details=None,
        )
        self.setup_intents[identifier] = setup_intent
        return setup_intent


def card_outcome(payment_method_id: str) -> tuple[str, str | None]:
    """How a charge on this card goes: (payment intent status, decline code)."""
    if "chargeDeclinedInsufficientFunds" in payment_method_id:
        return "requires_payment_method", "insufficient_funds"
    if "chargeDeclined" in payment_method_id:
        return "requires_payment_method", "generic_decline"
    if "authenticationRequired" in payment_method_id:
        return "requires_action", None
    return "succeeded", None


def _without_includables(node: Any) -> Any:
    if isinstance(node, list):
        for element in node:
            _without_includables(element)
    elif isinstance(node, dict):
        for key in _INCLUDABLE.get(str(node.get("object")), set()):
            node.pop(key, None)
        for value in node.values():
            _without_includables(value)
    return node
