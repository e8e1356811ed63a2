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
    with respx.mock(base_url=STRIPE_API, assert_all_called=False) as router:
        router.route().mock(side_effect=fake.handle)
        yield fake
