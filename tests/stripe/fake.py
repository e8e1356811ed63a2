"""`FakeStripe`: a stateful in-memory fake of Stripe's HTTP API (v1), in the pinned version's
shapes, answering the requests that respx routes to `handle` (see `plugin.py`).

- Every request is recorded in `requests` (failed ones too); `calls()` filters them.
- State is in plain dicts keyed by id (`customers`, `subscriptions`, ...): arrange a test by
  calling the `add_*` helpers or by editing those dicts, and assert on them afterwards.
- Cards behave by payment method id: "chargeDeclinedInsufficientFunds" / "chargeDeclined"
  decline, "authenticationRequired" needs SCA, "missing" does not exist; any other unknown
  `pm_...` id is created on first use as a visa card with no customer.
- A POST repeated with an Idempotency-Key gets the first answer back (a different body: 400).
- `fail_next()` makes the next matching requests answer 5xx or time out.
- Every route names the stripe-python `*Params` type of its call (`stripe.params`), and every
  request is checked against it at every depth: a parameter the type does not list gets
  Stripe's own 400 ("Received unknown parameter: items[0][bogus]", `param` set), so the
  service cannot send what the pinned version's API refuses. A route without a Params type
  is refused when the fake is built.
- An unknown id in a path is Stripe's 404 `resource_missing` (`param` "id"; "payment_method"
  for payment methods).
- Parameters Stripe accepts but the fake does not model, on subscription, item, schedule and
  invoice writes, are refused with a 400 whose message names FakeStripe, so a test never
  passes by ignoring them.
"""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import stripe
from stripe import params as stripe_params

from tests.stripe.checkout import FakeCheckout
from tests.stripe.fixtures import stripe_fixture
from tests.stripe.invoicing import EMBEDDED_LINES
from tests.stripe.parameters import accepted_parameters, is_params_type, unknown_parameter
from tests.stripe.wire import (
    Params,
    StripeApiError,
    StripeObject,
    StripeRequest,
    api_error,
    as_bool,
    as_list,
    decode_params,
    invalid_request,
    list_object,
    merge_metadata,
    resource_missing,
)

__all__ = ["FakeStripe", "Route", "StripeRequest"]

Handler = Callable[..., StripeObject]
_SEARCH_CLAUSE = re.compile(r"^\s*(metadata\['([^']+)'\]|email|name)\s*:\s*'([^']*)'\s*$")


@dataclass(frozen=True)
class Route:
    """A request the fake answers, and the parameters Stripe accepts on it."""

    method: str
    pattern: re.Pattern[str]
    params_type: type
    handler: Handler


@dataclass
class _Failure:
    method: str
    path: str
    status: int
    timeout: bool
    remaining: int
    after_acting: bool = False
    saved: bool = False


class FakeStripe(FakeCheckout):
    def __init__(self, now: int) -> None:
        super().__init__(now)
        self.requests: list[StripeRequest] = []
        self._failures: list[_Failure] = []
        # Idempotency-Key -> (method, path, params, status, body)
        self._idempotent: dict[str, tuple[str, str, Params, int, StripeObject]] = {}
        self.routes = [self._route(*entry) for entry in self._table()]

    @staticmethod
    def _route(method: str, pattern: str, params_type: object, handler: Handler) -> Route:
        if not is_params_type(params_type):
            raise TypeError(
                f"FakeStripe's route {method} {pattern} names no stripe.params type "
                f"({params_type!r}): every route needs its call's Params type, which each "
                "request to it is checked against."
            )
        accepted_parameters(params_type)  # every nested type resolves, or fail now
        return Route(method, re.compile(pattern), params_type, handler)

    def _table(self) -> list[tuple[str, str, object, Handler]]:
        """Each route with the stripe-python Params type of its call: what Stripe accepts there."""
        p = stripe_params
        return [
            ("GET", r"/v1/account", p.AccountRetrieveCurrentParams, self._get_account),
            (
                "POST",
                r"/v1/checkout/sessions",
                p.checkout.SessionCreateParams,
                self._create_checkout_session,
            ),
            (
                "GET",
                r"/v1/checkout/sessions",
                p.checkout.SessionListParams,
                self._list_checkout_sessions,
            ),
            (
                "GET",
                r"/v1/checkout/sessions/([^/]+)",
                p.checkout.SessionRetrieveParams,
                self._get_checkout_session,
            ),
            (
                "POST",
                r"/v1/checkout/sessions/([^/]+)/expire",
                p.checkout.SessionExpireParams,
                self._expire_checkout_session,
            ),
            (
                "POST",
                r"/v1/billing_portal/sessions",
                p.billing_portal.SessionCreateParams,
                self._create_portal_session,
            ),
            ("POST", r"/v1/customers", p.CustomerCreateParams, self._create_customer),
            ("GET", r"/v1/customers", p.CustomerListParams, self._list_customers),
            ("GET", r"/v1/customers/search", p.CustomerSearchParams, self._search_customers),
            ("GET", r"/v1/customers/([^/]+)", p.CustomerRetrieveParams, self._get_customer),
            ("POST", r"/v1/customers/([^/]+)", p.CustomerUpdateParams, self._update_customer),
            ("GET", r"/v1/payment_methods", p.PaymentMethodListParams, self._list_payment_methods),
            (
                "GET",
                r"/v1/payment_methods/([^/]+)",
                p.PaymentMethodRetrieveParams,
                self._get_payment_method,
            ),
            (
                "POST",
                r"/v1/payment_methods/([^/]+)/attach",
                p.PaymentMethodAttachParams,
                self._attach_payment_method,
            ),
            (
                "POST",
                r"/v1/payment_methods/([^/]+)/detach",
                p.PaymentMethodDetachParams,
                self._detach_payment_method,
            ),
            ("POST", r"/v1/setup_intents", p.SetupIntentCreateParams, self._create_setup_intent),
            (
                "GET",
                r"/v1/setup_intents/([^/]+)",
                p.SetupIntentRetrieveParams,
                self._get_setup_intent,
            ),
            ("POST", r"/v1/subscriptions", p.SubscriptionCreateParams, self._create_subscription),
            (
                "GET",
                r"/v1/subscriptions",
                p.SubscriptionListParams,
                self._list_subscriptions_page,
            ),
            (
                "GET",
                r"/v1/subscriptions/([^/]+)",
                p.SubscriptionRetrieveParams,
                self._get_subscription,
            ),
            (
                "POST",
                r"/v1/subscriptions/([^/]+)",
                p.SubscriptionUpdateParams,
                self._update_subscription,
            ),
            (
                "DELETE",
                r"/v1/subscriptions/([^/]+)",
                p.SubscriptionCancelParams,
                self._cancel_subscription,
            ),
            ("POST", r"/v1/subscription_items", p.SubscriptionItemCreateParams, self._create_item),
            (
                "POST",
                r"/v1/subscription_items/([^/]+)",
                p.SubscriptionItemUpdateParams,
                self._update_item,
            ),
            (
                "DELETE",
                r"/v1/subscription_items/([^/]+)",
                p.SubscriptionItemDeleteParams,
                self._delete_item,
            ),
            (
                "POST",
                r"/v1/invoices/create_preview",
                p.InvoiceCreatePreviewParams,
                self._create_preview,
            ),
            ("POST", r"/v1/invoices", p.InvoiceCreateParams, self._create_invoice),
            ("GET", r"/v1/invoices/([^/]+)", p.InvoiceRetrieveParams, self._get_invoice),
            (
                "GET",
                r"/v1/invoices/([^/]+)/lines",
                p.InvoiceLineItemListParams,
                self._list_invoice_lines,
            ),
            ("GET", r"/v1/tax_rates/([^/]+)", p.TaxRateRetrieveParams, self._get_tax_rate),
            ("POST", r"/v1/invoices/([^/]+)/pay", p.InvoicePayParams, self._pay_invoice),
            ("POST", r"/v1/invoices/([^/]+)", p.InvoiceUpdateParams, self._update_invoice),
            (
                "POST",
                r"/v1/invoices/([^/]+)/mark_uncollectible",
                p.InvoiceMarkUncollectibleParams,
                self._mark_invoice_uncollectible,
            ),
            (
                "POST",
                r"/v1/invoices/([^/]+)/finalize",
                p.InvoiceFinalizeInvoiceParams,
                self._finalize_invoice,
            ),
            ("POST", r"/v1/invoiceitems", p.InvoiceItemCreateParams, self._create_invoice_item),
            ("GET", r"/v1/invoiceitems", p.InvoiceItemListParams, self._list_invoice_items),
            (
                "GET",
                r"/v1/invoice_payments",
                p.InvoicePaymentListParams,
                self._list_invoice_payments,
            ),
            (
                "GET",
                r"/v1/payment_intents/([^/]+)",
                p.PaymentIntentRetrieveParams,
                self._get_payment_intent,
            ),
            (
                "POST",
                r"/v1/subscription_schedules",
                p.SubscriptionScheduleCreateParams,
                self._create_schedule,
            ),
            (
                "GET",
                r"/v1/subscription_schedules/([^/]+)",
                p.SubscriptionScheduleRetrieveParams,
                self._get_schedule,
            ),
            (
                "POST",
                r"/v1/subscription_schedules/([^/]+)",
                p.SubscriptionScheduleUpdateParams,
                self._update_schedule,
            ),
            (
                "POST",
                r"/v1/subscription_schedules/([^/]+)/release",
                p.SubscriptionScheduleReleaseParams,
                self._release_schedule,
            ),
            ("POST", r"/v1/products", p.ProductCreateParams, self._create_product),
            ("GET", r"/v1/products/([^/]+)", p.ProductRetrieveParams, self._get_product),
            ("POST", r"/v1/products/([^/]+)", p.ProductUpdateParams, self._update_product),
            ("GET", r"/v1/prices", p.PriceListParams, self._list_prices),
            ("POST", r"/v1/prices", p.PriceCreateParams, self._create_price),
            ("GET", r"/v1/prices/([^/]+)", p.PriceRetrieveParams, self._get_price),
            ("POST", r"/v1/prices/([^/]+)", p.PriceUpdateParams, self._update_price),
            (
                "GET",
                r"/v1/webhook_endpoints",
                p.WebhookEndpointListParams,
                self._list_webhook_endpoints,
            ),
        ]

    # --- test controls -----------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[StripeRequest]:
        """Recorded requests of `method` to `path` (a prefix when `path` ends with "/")."""
        return [
            request
            for request in self.requests
            if request.method == method.upper()
            and (request.path.startswith(path) if path.endswith("/") else request.path == path)
        ]

    def add_route(self, method: str, pattern: str, params_type: object, handler: Handler) -> None:
        """Answer `method` on paths matching `pattern` with `handler(params, *groups)`, ahead
        of the fake's own routes: for an endpoint it does not model, or a test's variant of
        one. Its requests are recorded and checked against `params_type` like any other."""
        self.routes.insert(0, self._route(method, pattern, params_type, handler))

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int = 500,
        timeout: bool = False,
        times: int = 1,
        after_acting: bool = False,
        saved: bool = False,
    ) -> None:
        """The next `times` requests of `method` to a path starting with `path` answer `status`
        with a Stripe api_error, or raise httpx.ReadTimeout when `timeout`.

        `after_acting`: Stripe does the work (and keeps its answer under the idempotency key)
        and only then is the answer lost in a timeout. `saved`: the error itself is kept under
        the idempotency key and replayed, as Stripe does with a 500 it returned."""
        self._failures.append(
            _Failure(method.upper(), path, status, timeout, times, after_acting, saved)
        )

    def event(self, event_type: str, data_object: StripeObject) -> StripeObject:
        """An event of the pinned API version around a copy of `data_object`."""
        event = stripe_fixture("event")
        event.update(
            id=self.new_id("evt"),
            type=event_type,
            created=self.now,
            api_version=stripe.api_version,
            data={"object": self.render(data_object, [])},
        )
        return event

    # --- the HTTP side -----------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method.upper(), request.url.path
        encoded = (
            request.content.decode("utf-8")
            if method == "POST"
            else request.url.query.decode("ascii")
        )
        params = decode_params(encoded)
        key = request.headers.get("Idempotency-Key")
        self.requests.append(
            StripeRequest(method, path, params, key, request.headers.get("Stripe-Version"))
        )
        failure = next(
            (
                failure
                for failure in self._failures
                if failure.remaining > 0
                and failure.method == method
                and path.startswith(failure.path)
            ),
            None,
        )
        if failure is not None and not failure.after_acting:
            failure.remaining -= 1
            if failure.timeout:
                raise httpx.ReadTimeout("injected by FakeStripe.fail_next", request=request)
            error = api_error(failure.status)
            if failure.saved and key is not None:
                self._idempotent[key] = (method, path, params, error.status, error.body)
            return self._response(error.status, error.body)
        if not request.headers.get("Authorization", "").startswith("Bearer sk_"):
            return self._response(
                401,
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key."}},
            )
        route, arguments = self._match(method, path)
        if route is None:
            message = f"Unrecognized request URL ({method}: {path}); FakeStripe does not model it."
            return self._response(
                404, {"error": {"type": "invalid_request_error", "message": message}}
            )
        # As Stripe: a parameter its API does not list is refused before anything runs.
        unknown = unknown_parameter(params, route.params_type)
        if unknown is not None:
            error = invalid_request(f"Received unknown parameter: {unknown}", param=unknown)
            return self._response(error.status, error.body)
        if method == "POST" and key is not None and key in self._idempotent:
            first_method, first_path, first_params, status, body = self._idempotent[key]
            if (first_method, first_path, first_params) != (method, path, params):
                error = StripeApiError(
                    400,
                    {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same "
                        f"parameters they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    },
                )
                return self._response(error.status, error.body)
            return self._response(status, copy.deepcopy(body), replayed=True)
        status, body = self._run(route, arguments, params)
        # Stripe saves a result once the endpoint ran: not for a request it refused upfront.
        if method == "POST" and key is not None and (status < 400 or status == 402):
            self._idempotent[key] = (method, path, params, status, copy.deepcopy(body))
        if failure is not None:  # after_acting: the work is done, the answer is lost
            failure.remaining -= 1
            raise httpx.ReadTimeout("injected by FakeStripe.fail_next", request=request)
        return self._response(status, body)

    def _match(self, method: str, path: str) -> tuple[Route | None, tuple[str, ...]]:
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if route.method == method and match:
                return route, match.groups()
        return None, ()

    def _run(
        self, route: Route, arguments: tuple[str, ...], params: Params
    ) -> tuple[int, StripeObject]:
        try:
            result = route.handler(params, *arguments)
            return 200, self.render(result, as_list(params.get("expand")))
        except StripeApiError as error:
            return error.status, error.body

    def _response(self, status: int, body: StripeObject, replayed: bool = False) -> httpx.Response:
        headers = {"Request-Id": self.new_id("req")}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return httpx.Response(status, json=body, headers=headers)

    # --- account -----------------------------------------------------------------------

    def _get_account(self, params: Params) -> StripeObject:
        return self.account

    def _list_webhook_endpoints(self, params: Params) -> StripeObject:
        endpoints = list(reversed(self.webhook_endpoints.values()))
        return list_object("/v1/webhook_endpoints", endpoints, params)

    # --- customers ---------------------------------------------------------------------

    def _create_customer(self, params: Params) -> StripeObject:
        customer = self.add_customer(email=params.get("email") or None)
        self.update_customer_fields(customer, params)
        return customer

    def _get_customer(self, params: Params, customer_id: str) -> StripeObject:
        return self.customer(customer_id)

    def _update_customer(self, params: Params, customer_id: str) -> StripeObject:
        customer = self.customer(customer_id)
        self.update_customer_fields(customer, params)
        return customer

    def _list_customers(self, params: Params) -> StripeObject:
        found = [
            customer
            for customer in reversed(self.customers.values())
            if not params.get("email") or customer.get("email") == params["email"]
        ]
        return list_object("/v1/customers", found, params)

    def _search_customers(self, params: Params) -> StripeObject:
        """Supports clauses `metadata['key']:'value'`, `email:'x'`, `name:'x'` joined by AND."""
        query = str(params.get("query") or "")
        clauses = []
        for clause in re.split(r"\s+AND\s+", query):
            match = _SEARCH_CLAUSE.match(clause)
            if match is None:
                raise invalid_request(
                    f"Invalid search query (for FakeStripe): {query}", param="query"
                )
            field, metadata_key, value = match.groups()
            clauses.append((metadata_key, field, value))

        def matches(customer: StripeObject) -> bool:
            for metadata_key, field, value in clauses:
                actual = customer["metadata"].get(metadata_key) if metadata_key else customer[field]
                if actual != value:
                    return False
            return True

        found = [customer for customer in reversed(self.customers.values()) if matches(customer)]
        page = list_object("/v1/customers/search", found, params)
        page.update(object="search_result", next_page=None)
        return page

    # --- payment methods ---------------------------------------------------------------

    def _get_payment_method(self, params: Params, payment_method_id: str) -> StripeObject:
        return self.payment_method(payment_method_id)

    def _attach_payment_method(self, params: Params, payment_method_id: str) -> StripeObject:
        payment_method = self.payment_method(payment_method_id)
        customer = self.customer(params.get("customer"), param="customer", status=400)
        payment_method["customer"] = customer["id"]
        return payment_method

    def _detach_payment_method(self, params: Params, payment_method_id: str) -> StripeObject:
        payment_method = self.payment_method(payment_method_id)
        owner = self.customers.get(payment_method.get("customer") or "")
        if payment_method.get("customer") is None:
            raise invalid_request(
                f"The payment method {payment_method_id} is not attached to a customer.",
                param="payment_method",
            )
        if owner is not None and self.default_payment_method_of(owner["id"]) == payment_method_id:
            owner["invoice_settings"]["default_payment_method"] = None
        payment_method["customer"] = None
        return payment_method

    def _list_payment_methods(self, params: Params) -> StripeObject:
        customer = params.get("customer")
        if customer:
            self.customer(customer, param="customer", status=400)
        found = [
            payment_method
            for payment_method in reversed(self.payment_methods.values())
            if (not customer or payment_method.get("customer") == customer)
            and params.get("type", "card") == payment_method["type"]
        ]
        return list_object("/v1/payment_methods", found, params)

    def _create_setup_intent(self, params: Params) -> StripeObject:
        customer = params.get("customer")
        if customer:
            self.customer(customer, param="customer", status=400)
        setup_intent = self.new_setup_intent(
            customer=customer, usage=params.get("usage") or "off_session"
        )
        allowed = as_list(params.get("allowed_payment_method_types"))
        setup_intent["allowed_payment_method_types"] = allowed or None
        setup_intent["payment_method_types"] = allowed or ["card"]
        return setup_intent

    def _get_setup_intent(self, params: Params, setup_intent_id: str) -> StripeObject:
        if setup_intent_id not in self.setup_intents:
            raise resource_missing("setup_intent", setup_intent_id)
        return self.setup_intents[setup_intent_id]

    # --- subscriptions, invoices -------------------------------------------------------

    def _get_subscription(self, params: Params, subscription_id: str) -> StripeObject:
        return self.subscription(subscription_id)

    def _list_subscriptions_page(self, params: Params) -> StripeObject:
        return list_object("/v1/subscriptions", self._list_subscriptions(params), params)

    def _get_invoice(self, params: Params, invoice_id: str) -> StripeObject:
        invoice = self.invoice(invoice_id)
        lines = invoice["lines"]["data"]
        if len(lines) <= EMBEDDED_LINES:
            return invoice
        # As Stripe: an invoice embeds its first lines; the rest are paged from .../lines.
        embedded = copy.copy(invoice)
        embedded["lines"] = {**invoice["lines"], "data": lines[:EMBEDDED_LINES], "has_more": True}
        return embedded

    def _list_invoice_payments(self, params: Params) -> StripeObject:
        found = [
            invoice_payment
            for invoice_payment in reversed(self.invoice_payments.values())
            if not params.get("invoice") or invoice_payment["invoice"] == params["invoice"]
        ]
        return list_object("/v1/invoice_payments", found, params)

    def _get_payment_intent(self, params: Params, payment_intent_id: str) -> StripeObject:
        if payment_intent_id not in self.payment_intents:
            raise resource_missing("payment_intent", payment_intent_id)
        return self.payment_intents[payment_intent_id]

    def _get_schedule(self, params: Params, schedule_id: str) -> StripeObject:
        return self.schedule(schedule_id)

    # --- catalog -----------------------------------------------------------------------

    def _create_product(self, params: Params) -> StripeObject:
        identifier = params.get("id") or self.new_id("prod")
        if identifier in self.products:
            raise invalid_request(
                f"Product already exists: {identifier}",
                param="id",
                code="resource_already_exists",
            )
        if not params.get("name"):
            raise invalid_request("Missing required param: name.", param="name")
        product = self.add_product(id=identifier, name=params["name"])
        self._update_product(params, identifier)
        return product

    def _get_product(self, params: Params, product_id: str) -> StripeObject:
        if product_id not in self.products:
            raise resource_missing("product", product_id)
        return self.products[product_id]

    def _update_product(self, params: Params, product_id: str) -> StripeObject:
        product = self._get_product(params, product_id)
        for field in ("name", "description", "tax_code", "unit_label", "url"):
            if field in params:
                product[field] = params[field] or None
        if "active" in params:
            product["active"] = as_bool(params["active"])
        if "metadata" in params:
            product["metadata"] = merge_metadata(product["metadata"], params["metadata"])
        product["updated"] = self.now
        return product

    def _list_prices(self, params: Params) -> StripeObject:
        keys = as_list(params.get("lookup_keys"))
        found = [
            price
            for price in reversed(self.prices.values())
            if (not keys or price.get("lookup_key") in keys)
            and ("active" not in params or price["active"] == as_bool(params["active"]))
            and (not params.get("product") or price["product"] == params["product"])
        ]
        return list_object("/v1/prices", found, params)

    def _create_price(self, params: Params) -> StripeObject:
        product = params.get("product")
        if product not in self.products:
            raise resource_missing("product", str(product), param="product", status=400)
        recurring = params.get("recurring") or {}
        if not recurring.get("interval"):
            raise invalid_request(
                "FakeStripe models recurring prices only: recurring[interval] is required.",
                param="recurring",
            )
        holder = self._lookup_key_holder(params, None)
        price = self.add_price(
            product=str(product),
            unit_amount=int(params["unit_amount"]),
            currency=params.get("currency", "usd"),
            interval=recurring["interval"],
        )
        price["tax_behavior"] = params.get("tax_behavior", "unspecified")
        price["metadata"] = dict(params.get("metadata") or {})
        price["nickname"] = params.get("nickname")
        self._move_lookup_key(price, params, holder)
        return price

    def _get_price(self, params: Params, price_id: str) -> StripeObject:
        return self.price(price_id, param="id", status=404)

    def _update_price(self, params: Params, price_id: str) -> StripeObject:
        price = self.price(price_id, param="id", status=404)
        holder = self._lookup_key_holder(params, price_id)
        if "active" in params:
            price["active"] = as_bool(params["active"])
        if "metadata" in params:
            price["metadata"] = merge_metadata(price["metadata"], params["metadata"])
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        self._move_lookup_key(price, params, holder)
        return price

    def _lookup_key_holder(self, params: Params, price_id: str | None) -> StripeObject | None:
        """The other price holding the requested lookup key, if it may be moved (else 400)."""
        key = params.get("lookup_key") or None
        holder = next(
            (
                other
                for other in self.prices.values()
                if key and other["lookup_key"] == key and other["id"] != price_id
            ),
            None,
        )
        if holder is not None and not as_bool(params.get("transfer_lookup_key")):
            raise invalid_request(
                f"A price (`{holder['id']}`) already uses that lookup key.", param="lookup_key"
            )
        return holder

    @staticmethod
    def _move_lookup_key(price: StripeObject, params: Params, holder: StripeObject | None) -> None:
        if "lookup_key" in params:
            if holder is not None:
                holder["lookup_key"] = None
            price["lookup_key"] = params["lookup_key"] or None
