"""Whatever a browser (or anyone) sends the console, before or after sign-in, is answered
with a 4xx page, never a 500."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from tests.conftest import TokenFactory
from tests.console.helpers import csrf_of, sign_in
from tests.factories import create_customer


@pytest.fixture
async def operator(client: httpx.AsyncClient, make_token: TokenFactory) -> httpx.AsyncClient:
    response = await sign_in(client, make_token("7", roles=["billing_admin"]))
    assert response.status_code == 302
    return client


async def test_a_multipart_sign_in_without_a_boundary_is_refused_with_400(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/admin/login")
    for headers in (
        {"Content-Type": "multipart/form-data"},
        # The token in the header does not spare the body from being read.
        {"Content-Type": "multipart/form-data", "X-CSRF-Token": csrf_of(page)},
    ):
        response = await client.post("/admin/login", content=b"token=x", headers=headers)
        assert response.status_code == 400, response.text
        assert "could not be read" in response.text


async def test_a_chunked_body_over_the_limit_is_refused_with_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    chunk = b"token=" + b"x" * 1024

    async def body() -> object:
        # No Content-Length: the body is only known to be too large once it has arrived.
        for _ in range(settings.MAX_REQUEST_BODY_BYTES // len(chunk) + 2):
            yield chunk

    response = await client.post(
        "/admin/login",
        content=body(),  # type: ignore[arg-type]
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413, response.text
    assert "larger than the console accepts" in response.text


@pytest.mark.parametrize("row_id", ["abc", "99999999999999999999999", "-1.5", "1%00", "9" * 600])
async def test_a_row_page_for_an_id_that_cannot_exist_is_404(
    operator: httpx.AsyncClient, row_id: str
) -> None:
    for view in ("notification", "customer", "subscription-plan", "stripe-event"):
        response = await operator.get(f"/admin/{view}/details/{row_id}")
        assert response.status_code == 404, (view, response.text)


async def test_a_row_page_for_a_real_id_still_shows_it(
    operator: httpx.AsyncClient, session: AsyncSession
) -> None:
    customer = await create_customer(session, email="odd-input@example.com")
    await session.commit()
    response = await operator.get(f"/admin/customer/details/{customer.id}")
    assert response.status_code == 200
    assert "odd-input@example.com" in response.text


@pytest.mark.parametrize(
    "query",
    [
        "/admin/notification/list?status=%00",
        "/admin/customer/list?search=%00",
        "/admin/customer/list?search=a%00b",
        "/admin/stripe-event/list?type=%00",
        f"/admin/customer/list?search={'a' * 600}",
    ],
)
async def test_a_list_with_a_nul_or_overlong_value_in_its_address_is_400(
    operator: httpx.AsyncClient, query: str
) -> None:
    response = await operator.get(query)
    assert response.status_code == 400, response.text


async def test_a_list_search_and_filter_with_ordinary_values_still_work(
    operator: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_customer(session, email="odd-input@example.com")
    await session.commit()
    found = await operator.get("/admin/customer/list?search=odd-input")
    assert found.status_code == 200 and "odd-input@example.com" in found.text
    assert (await operator.get("/admin/notification/list?status=dead")).status_code == 200
