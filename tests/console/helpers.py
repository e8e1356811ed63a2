"""Driving the console's forms as a browser does: read the page's CSRF token, post it back."""

import re

import httpx

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF_FIELD.search(page.text)
    assert match is not None, page.text
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await client.get("/admin/login")
    return await client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(page)})


async def post_form(
    client: httpx.AsyncClient, page_url: str, post_url: str, data: dict[str, str]
) -> httpx.Response:
    """Open the page holding the form (its CSRF token), then submit the form."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(post_url, data={**data, "csrf_token": csrf_of(page)})
