"""Every operation of the OpenAPI schema, fuzzed with schemathesis against the app in process.

Requests are generated from the schema the app serves at /openapi.json (valid ones and, as
often, invalid ones), sent as customer 42, as a `billing_admin` or as a `service` through
httpx's ASGI transport, with Stripe answered by the test kit's fake. Each response must not be
a 5xx, must have a status the operation documents, and must match the documented schema and
content type.

Some cases name objects that exist (customer 42's and customer 43's cards, alerts, invoices,
the catalog's plans), so fuzzed bodies reach the code behind the 404s.

`FUZZ_EXAMPLES` sets the examples per operation: a few in `make test`, which runs
derandomized (the same inputs every run), many in `make fuzz`, which sets `FUZZ_RANDOMIZED=1`
for a new seed each run. The seed is printed with the counts and with a failure; `FUZZ_SEED`
runs with that seed again. `make fuzz` also sets `FUZZ_COVERAGE=1`: schemathesis's coverage
cases too (each boundary and each way to break each parameter, a few thousand requests).
"""

import asyncio
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import hypothesis
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.main import create_app
from app.models import Notification
from tests.conftest import TokenFactory, bearer, make_settings
from tests.populated_accounts import (
    admin_headers,
    create_catalog,
    populate_account,
    store_webhook_event,
)
from tests.stripe.fake import FakeStripe

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
FUZZ_RANDOMIZED = os.environ.get("FUZZ_RANDOMIZED") == "1"
FUZZ_COVERAGE = os.environ.get("FUZZ_COVERAGE") == "1"
# None: derandomized, Hypothesis derives the inputs from the test itself.
FUZZ_SEED: int | None = (
    int(os.environ["FUZZ_SEED"])
    if os.environ.get("FUZZ_SEED")
    else random.getrandbits(32)
    if FUZZ_RANDOMIZED
    else None
)

Operation = schemathesis.APIOperation[Any, Any, Any, Any]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _served_schema() -> schemathesis.BaseSchema:
    # The schema only: nothing is connected until the app's lifespan starts.
    app = create_app(make_settings("postgresql+asyncpg://fuzz@localhost/fuzz", "redis://fuzz"))
    return schemathesis.openapi.from_dict(app.openapi())


def _operations(schema: schemathesis.BaseSchema) -> list[Operation]:
    operations = []
    for result in schema.get_all_operations():
        # An operation schemathesis cannot read would otherwise go unfuzzed, silently.
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    return operations


SCHEMA = _served_schema()
OPERATIONS = _operations(SCHEMA)


@dataclass
class FuzzTally:
    summary: dict[str, str]
    responses: int = 0
    server_errors: int = 0
    operations: set[str] = field(default_factory=set)

    def count(self, operation: str, status_code: int) -> None:
        self.operations.add(operation)
        self.responses += 1
        self.server_errors += status_code >= 500
        seed = "derandomized" if FUZZ_SEED is None else f"FUZZ_SEED={FUZZ_SEED}"
        self.summary["fuzz"] = (
            f"{self.responses} responses over {len(self.operations)} operations, "
            f"{self.server_errors} 5xx ({seed})"
        )


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    # Thousands of requests a minute from one caller: rate limits would answer most of them.
    return make_settings(
        database_url,
        redis_url,
        RATE_LIMIT_PER_USER_PER_MINUTE=10**9,
        RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE=10**9,
    )


@pytest_asyncio.fixture
async def known_ids(
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    make_token: TokenFactory,
) -> dict[str, list[Any]]:
    """Customer 42 and customer 43 with data of every kind; each path parameter's real values."""
    catalog = await create_catalog(session, fake_stripe)
    own = await populate_account(
        client, session, fake_stripe, make_token, catalog=catalog, user_id="42"
    )
    other = await populate_account(
        client, session, fake_stripe, make_token, catalog=catalog, user_id="43"
    )
    event_id = await store_webhook_event(client, fake_stripe)
    return {
        "plan_id": [catalog.plan_id, catalog.upgrade_plan_id, catalog.downgrade_plan_id],
        "plan_reference": [catalog.plan_id, catalog.upgrade_plan_id, catalog.plan_slug],
        "add_on_id": [catalog.add_on_id],
        "customer_id": [own.user_id, other.user_id],
        "subscription_id": [own.subscription_id, other.subscription_id],
        "payment_method_id": [*own.payment_method_ids, *other.payment_method_ids],
        # The fake's cards that decline, need 3-D Secure, or do not exist; and a new one.
        "card": [
            *own.payment_method_ids,
            *other.payment_method_ids,
            "pm_card_chargeDeclinedInsufficientFunds",
            "pm_card_authenticationRequired",
            "pm_card_missing",
            "pm_card_amex",
        ],
        "record_id": [own.invoice_record_id, own.refund_record_id, other.invoice_record_id],
        "alert_id": [*own.alert_ids, *other.alert_ids],
        "stripe_event_id": [event_id],
        # The accounts' notices (welcome, usage alerts): a resend of one is a documented 409.
        "notification_id": list(await session.scalars(select(Notification.id))) or [1],
    }


@cache
def _case_strategy(
    label: str, mode: GenerationMode, known: tuple[tuple[str, Any], ...] | None
) -> st.SearchStrategy[Case[Any]]:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    if known is None:
        return operation.as_strategy(generation_mode=mode)
    return operation.as_strategy(generation_mode=mode, path_parameters=dict(known))


# Body fields that name an object, and the known values each may take instead.
KNOWN_BODY_FIELDS = {
    "plan_id": "plan_reference",
    "addon_id": "add_on_id",
    "payment_method_id": "card",
    "customer_id": "customer_id",
}


def _naming_known_objects(
    case: Case[Any], known_ids: dict[str, list[Any]]
) -> st.SearchStrategy[Case[Any]]:
    """The case, with the object ids of its body (and of its add-ons) drawn from known ones."""
    if not isinstance(case.body, dict):
        return st.just(case)
    body: dict[str, Any] = case.body
    add_ons = body.get("add_ons")
    items = (
        [body, *(item for item in add_ons if isinstance(item, dict))]
        if isinstance(add_ons, list)
        else [body]
    )
    slots = [(item, name) for item in items for name in KNOWN_BODY_FIELDS if name in item]
    if not slots:
        return st.just(case)

    def patched(values: tuple[Any, ...]) -> Case[Any]:
        for (item, name), value in zip(slots, values, strict=True):
            item[name] = value
        return case

    known = (st.sampled_from(known_ids[KNOWN_BODY_FIELDS[name]]) for _, name in slots)
    return st.tuples(*known).map(patched)


def _cases(operation: Operation, known_ids: dict[str, list[Any]]) -> st.SearchStrategy[Case[Any]]:
    """Cases as schemathesis generates them, and cases naming objects that exist (in the path
    and in the body), so that fuzzed fields get past the 404s."""
    generated = [_case_strategy(operation.label, mode, None) for mode in GenerationMode]
    names = [parameter.name for parameter in operation.path_parameters]
    known_paths = st.tuples(*(st.sampled_from(known_ids[name]) for name in names))
    known = known_paths.flatmap(
        lambda values: st.one_of(
            [
                _case_strategy(operation.label, mode, tuple(zip(names, values, strict=True)))
                if names
                else _case_strategy(operation.label, mode, None)
                for mode in GenerationMode
            ]
        )
    ).flatmap(lambda case: _naming_known_objects(case, known_ids))
    return st.one_of([*generated, known])


def _httpx_request(case: Case[Any], headers: dict[str, str]) -> dict[str, Any]:
    """The request schemathesis would send (it speaks `requests`), as httpx arguments."""
    sent = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    request: dict[str, Any] = {
        "method": sent["method"],
        "url": sent["url"],
        "headers": sent["headers"],
        "params": sent.get("params"),
    }
    if "json" in sent:
        request["content"] = json.dumps(sent["json"]).encode()
    elif sent.get("data") is not None:
        data = sent["data"]
        request["content"] = data.encode() if isinstance(data, str) else data
    if sent.get("cookies"):
        cookie = "; ".join(f"{name}={value}" for name, value in sent["cookies"].items())
        request["headers"] = {**request["headers"], "Cookie": cookie}
    return request


def _fuzz_settings() -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=FUZZ_SEED is None,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def _fuzz_operation(
    operation: Operation,
    known_ids: dict[str, list[Any]],
    callers: dict[str, dict[str, str]],
    send: Callable[[dict[str, Any]], httpx.Response],
    tally: FuzzTally,
) -> Callable[[], None]:
    """One operation's property test: a Hypothesis test of its own, so each operation gets
    its own examples and its own shrunk failure."""

    @_fuzz_settings()
    @given(caller=st.sampled_from(sorted(callers)), case=_cases(operation, known_ids))
    def fuzz(caller: str, case: Case[Any]) -> None:
        response = send(_httpx_request(case, callers[caller]))
        tally.count(operation.label, response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failures:
            # A BaseExceptionGroup, which Hypothesis would let through unshrunk.
            raise AssertionError(f"As {caller}: {failures}") from None

    return fuzz if FUZZ_SEED is None else hypothesis.seed(FUZZ_SEED)(fuzz)


def _coverage_cases(operation: Operation) -> Iterator[Case[Any]]:
    config = SCHEMA.config.generation_for(operation=operation, phase="coverage")
    return SCHEMA.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=config
    )


def _describe(error: BaseException) -> str:
    return "\n".join([str(error), *getattr(error, "__notes__", [])])


async def test_fuzzed_requests_get_no_5xx_and_documented_answers(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    known_ids: dict[str, list[Any]],
    run_summary: dict[str, str],
) -> None:
    callers = {
        "customer 42": bearer(make_token("42")),
        "billing admin": admin_headers(make_token),
        # The telephony backend, acting for any customer it names.
        "service": bearer(make_token("900", roles=["service"])),
    }
    loop = asyncio.get_running_loop()

    def send(request: dict[str, Any]) -> httpx.Response:
        # Hypothesis drives each operation from a worker thread; the app answers on this
        # test's event loop, where the database connections live.
        return asyncio.run_coroutine_threadsafe(client.request(**request), loop).result()

    tally = FuzzTally(run_summary)
    failures = {}
    for operation in OPERATIONS:
        fuzz = _fuzz_operation(operation, known_ids, callers, send, tally)
        try:
            await asyncio.to_thread(fuzz)
        except Exception as error:
            failures[operation.label] = _describe(error)
            continue
        for case in _coverage_cases(operation) if FUZZ_COVERAGE else ():
            for caller, headers in callers.items():
                response = await client.request(**_httpx_request(case, headers))
                tally.count(operation.label, response.status_code)
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as found:
                    failures.setdefault(operation.label, f"As {caller}: {found}")

    assert tally.operations == {operation.label for operation in OPERATIONS}
    seed = "" if FUZZ_SEED is None else f" (again with FUZZ_SEED={FUZZ_SEED})"
    assert not failures, f"{len(failures)} operations failed{seed}:\n\n" + "\n\n".join(
        f"{label}:\n{text}" for label, text in failures.items()
    )
