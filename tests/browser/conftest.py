"""A real browser against a real server: headless Chromium (Debian's package, which `make test`
installs when it is missing) driven by Playwright, and the app served by uvicorn on a port of
127.0.0.1 in the test's own event loop, so the test kit's Stripe fake and frozen clock apply.

Every request the page makes to anything but this machine is aborted and recorded, so a test
can show that a page needed nothing from outside.
"""

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, Page, Route, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.main import create_app

# Where Chromium is: Debian's package by default (`make test` installs it as root when it is
# missing); CHROMIUM=/path/to/chrome for another one.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        # Never skipped: a missing browser is a broken test setup, not a passing test.
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when run as "
            "root; otherwise `apt-get install chromium`, or set CHROMIUM=/path/to/chrome"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def live_server(
    settings: Settings, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[str]:
    """The service on a free port of 127.0.0.1, its lifespan run by uvicorn; its base URL."""
    application = create_app(settings, clock)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    # Listening before uvicorn serves: the browser's first connection waits in the backlog
    # until start-up is done, so nothing polls for readiness.
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        # As `billing serve` runs it: logging left to the app's own set-up (a log level or
        # config here would change uvicorn's loggers for the tests after this one).
        uvicorn.Config(
            application, lifespan="on", log_config=None, log_level=None, access_log=False
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


@dataclass
class OfflinePage:
    page: Page
    # Requests to other hosts, aborted.
    blocked: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def offline_page(browser: Browser) -> AsyncIterator[OfflinePage]:
    """A page in a fresh browser context that can reach this machine only."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    result: OfflinePage | None = None

    async def local_only(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            assert result is not None
            result.blocked.append(route.request.url)
            await route.abort()

    await context.route("**/*", local_only)
    result = OfflinePage(await context.new_page())
    try:
        yield result
    finally:
        await context.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """SCREENSHOT_DIR to keep the screenshots somewhere to look at; a temporary one else."""
    directory = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
