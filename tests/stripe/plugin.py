"""The `fake_stripe` fixture: every request to https://api.stripe.com goes to a `FakeStripe`.

Registered for the whole suite by `pytest_plugins = ["tests.stripe.plugin"]` in
tests/conftest.py.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import respx

from tests.stripe.fake import FakeStripe

STRIPE_API = "https://api.stripe.com"
FAKE_STRIPE_NOW = int(datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe(now=FAKE_STRIPE_NOW)
    with respx.mock(assert_all_called=False) as router:
        router.route(scheme="https", host="api.stripe.com").mock(side_effect=fake.handle)
        # The tests' own local servers (the dashboard's webhook receiver) are reached for
        # real; any other host is still refused as not mocked.
        router.route(host="127.0.0.1").pass_through()
        yield fake
