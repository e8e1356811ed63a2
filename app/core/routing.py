from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class SlashTolerantRouter(APIRouter):
    """Serves each path with and without its trailing slash, never redirecting.

    The dashboard calls the seed's paths with a trailing slash, other clients often drop it,
    and Stripe counts a 3xx on the webhook as a failed delivery. The twin route is hidden from
    the OpenAPI schema so /docs lists each operation once.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        twin = path.removesuffix("/") if path.endswith("/") else f"{path}/"
        # A router's root ("/" under its prefix) has the bare prefix as its twin: path "".
        if twin != path and (twin or self.prefix):
            super().add_api_route(twin, endpoint, **{**kwargs, "include_in_schema": False})
