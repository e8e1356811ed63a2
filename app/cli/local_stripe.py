"""A local stand-in for Stripe's API, for `billing dev` without a Stripe key: the test kit's
fake (tests/stripe/http_server.py) served over HTTP on a free port, so a newcomer can sync
the catalog and subscribe with test cards (`pm_card_visa`) with no account and no network.

Started as a process by module name: the service itself never imports the test kit.
"""

import importlib.util
import socket
import subprocess
import sys
import time
from contextlib import ExitStack

import httpx

FAKE_STRIPE_APP = "tests.stripe.http_server:app"
START_TIMEOUT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_local_stripe(stack: ExitStack) -> str | None:
    """Start the fake, wait until it answers, and return its URL (stopped with `stack`);
    None where the test kit is not installed (an image built without tests/)."""
    if importlib.util.find_spec(FAKE_STRIPE_APP.split(":")[0]) is None:
        return None
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", FAKE_STRIPE_APP, "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        start_new_session=True,
    )  # fmt: skip

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    stack.callback(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            # Any answer means it serves (the fake answers an unknown path with Stripe's 404).
            httpx.get(f"{url}/v1/account", timeout=1)
            return url
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the local Stripe stand-in did not start") from None
            time.sleep(0.1)
