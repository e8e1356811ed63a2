"""Stripe's example objects (`fixtures.json`, trimmed from stripe/openapi), read once per run."""

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES_PATH = Path(__file__).with_name("fixtures.json")


@cache
def _resources() -> dict[str, dict[str, Any]]:
    loaded: dict[str, Any] = json.loads(FIXTURES_PATH.read_text(encoding="utf-8"))
    resources: dict[str, dict[str, Any]] = loaded["resources"]
    return resources


def stripe_fixture(resource: str) -> dict[str, Any]:
    """A fresh deep copy of Stripe's example object of `resource` (e.g. "subscription")."""
    return copy.deepcopy(_resources()[resource])
