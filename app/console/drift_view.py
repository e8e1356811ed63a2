"""The drift report of `billing reconcile`, on a page: what differs between local state and
Stripe. It reads Stripe (outside any transaction) and changes nothing."""

from typing import Any

from sqladmin import BaseView, expose
from starlette.requests import Request
from starlette.responses import Response

from app.console.context import console_context
from app.core.errors import AppError
from app.stripe_sync.drift import find_drift


class DriftView(BaseView):
    name = "Stripe drift"
    icon = "fa-solid fa-scale-unbalanced"

    async def _page(self, request: Request, **context: Any) -> Response:
        response: Response = await self.templates.TemplateResponse(
            request,
            "console/drift.html",
            {"post_url": request.url_for("admin:view-drift"), "checked": False, **context},
        )
        return response

    @expose("/drift", methods=["GET", "POST"], identity="drift")
    async def drift(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._page(request)
        context = console_context(request)
        try:
            check = await find_drift(
                sessionmaker=context.sessionmaker, gateway=context.gateway, clock=context.clock
            )
        except AppError as error:
            return await self._page(request, error=f"Stripe could not be read: {error}")
        return await self._page(request, checked=True, drifts=check.drifts)
