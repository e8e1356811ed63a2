"""`billing serve`: uvicorn as the image and `billing dev` run it, proxies trusted only when
configured (the webhook's rate limit and the logs key on the client's address)."""

from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from app.cli.dev import uvicorn_options
from app.core.config import Settings

PROXY = "10.0.0.5"


async def client_address_seen(peer: str, settings: Settings, headers: dict[str, str]) -> str:
    """The client address the app sees behind uvicorn configured from `settings`, for a
    request arriving from `peer`."""
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen["client"] = scope["client"]
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, **uvicorn_options(settings))
    config.load()
    transport = httpx.ASGITransport(app=config.loaded_app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/", headers=headers)
    return str(seen["client"][0])


def settings_with(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("peer", ["203.0.113.9", "127.0.0.1", PROXY])
async def test_with_no_trusted_proxy_x_forwarded_for_changes_nothing(peer: str) -> None:
    seen = await client_address_seen(peer, settings_with(), {"X-Forwarded-For": "1.2.3.4"})

    assert seen == peer


async def test_a_configured_proxy_is_believed_and_nobody_else() -> None:
    settings = settings_with(FORWARDED_ALLOW_IPS="10.0.0.0/24, 192.0.2.1")
    forwarded = {"X-Forwarded-For": "1.2.3.4"}

    assert await client_address_seen(PROXY, settings, forwarded) == "1.2.3.4"
    assert await client_address_seen("203.0.113.9", settings, forwarded) == "203.0.113.9"


def test_a_proxy_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        settings_with(FORWARDED_ALLOW_IPS="proxy.internal")
