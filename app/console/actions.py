"""How a console action runs: the operator confirms on a page of its own (so a link, a
prefetch or a crawler following a GET changes nothing), the confirmation is a form post
carrying the CSRF token, and the change runs through its domain's service in one
transaction with its audit entry. A refusal (an `AppError`) is audited in a transaction of
its own, since the change's was rolled back."""

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar

import structlog
from sqladmin import ModelView
from sqladmin.authentication import get_current_user_id
from sqladmin.flash import Flash
from sqladmin.helpers import object_identifier_values
from sqladmin.pagination import Pagination
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.console import service
from app.console.context import console_context
from app.core.errors import AppError

logger = structlog.get_logger(__name__)

# A change: given the transaction's session and "now", do it through the domain's service
# and say what was done (the audit entry's details, and the operator's message).
Change = Callable[[AsyncSession, datetime], Awaitable[dict[str, Any]]]
# The same for one selected row, given its id as the page sent it.
RowChange = Callable[[AsyncSession, str, datetime], Awaitable[dict[str, Any]]]


def operator_of(request: Request) -> str:
    user_id = get_current_user_id(request)
    # Views run only behind `login_required`, which resolved the operator.
    assert isinstance(user_id, str)
    return user_id


async def run_audited(
    request: Request, *, action: str, target: str, change: Change
) -> dict[str, Any] | None:
    """Run `change` and audit it together; on an `AppError`, flash it, audit the refusal and
    answer None."""
    context = console_context(request)
    actor = operator_of(request)
    now = context.clock.now()
    try:
        async with context.sessionmaker.begin() as session:
            details = await change(session, now)
            await service.record_action(
                session,
                actor_user_id=actor,
                action=action,
                target=target,
                now=now,
                details=details,
            )
    except AppError as error:
        async with context.sessionmaker.begin() as session:
            await service.record_action(
                session,
                actor_user_id=actor,
                action=action,
                target=target,
                now=now,
                outcome="refused",
                details={"code": error.code, "message": error.detail_message},
            )
        Flash.error(request, f"{target}: {error.detail_message}")
        return None
    logger.info("console_action", action=action, target=target, user_id=actor)
    return details


MAX_QUERY_VALUE_LENGTH = 512  # longer than any text column a search or filter reads


def _is_row_identifier(model: Any, identifier: str) -> bool:
    if "\x00" in identifier or len(identifier) > MAX_QUERY_VALUE_LENGTH:
        return False
    try:
        values = object_identifier_values(identifier, model)
    except (ValueError, TypeError):
        return False
    return all(-(2**63) <= value < 2**63 if isinstance(value, int) else True for value in values)


def selected_ids(value: str) -> list[str]:
    return [part for part in value.split(",") if part.strip()][:100]


async def _for_row(
    change: RowChange, row_id: str, session: AsyncSession, now: datetime
) -> dict[str, Any]:
    return await change(session, row_id, now)


class ConsoleModelView(ModelView):
    """Read-only: sqladmin's own create, edit and delete write the ORM directly, bypassing
    the services' rules, so they are off; changes are the actions each view declares."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    page_size = 50

    # action slug -> (question, button label), for the confirmation page.
    confirmations: ClassVar[dict[str, tuple[str, str]]] = {}

    # sqladmin hands the URL's row id, search, filters and sort to the database as they
    # come; what PostgreSQL would refuse (a NUL, a number past bigint, a non-number for a
    # number column) is refused here first, so an odd URL is a 404 or a 400, never a 500.
    async def get_object_for_details(self, request: Request) -> Any:
        if not _is_row_identifier(self.model, request.path_params.get("pk", "")):
            raise HTTPException(status_code=404)
        return await super().get_object_for_details(request)

    async def list(self, request: Request) -> Pagination:
        for name, value in request.query_params.multi_items():
            if "\x00" in value or len(value) > MAX_QUERY_VALUE_LENGTH:
                raise HTTPException(
                    status_code=400,
                    detail=f"The `{name}` of this page's address is not a value it can use.",
                )
        return await super().list(request)

    async def confirm(
        self,
        request: Request,
        slug: str,
        *,
        needs_ids: bool = True,
        options: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        """The GET side of an action: a page asking to confirm, with a form posting to the
        action's POST endpoint (`options`: checkboxes, name and label)."""
        ids = selected_ids(request.query_params.get("pks", ""))
        question, button = self.confirmations[slug]
        response: Response = await self.templates.TemplateResponse(
            request,
            "console/confirm.html",
            {
                "model_view": self,
                "question": question,
                "button": button,
                "ids": ids,
                "needs_ids": needs_ids,
                "options": options,
                "post_url": request.url_for(f"admin:view-{self.identity}-{slug}"),
                "back_url": request.url_for("admin:list", identity=self.identity),
            },
        )
        return response

    async def perform(
        self,
        request: Request,
        *,
        action: str,
        change: RowChange,
        done: Callable[[str, dict[str, Any]], Awaitable[str]],
    ) -> Response:
        """The POST side: `change` for each selected row, audited one by one; then,
        after its commit, `done(id, details)` finishes (if need be) and says what happened."""
        form = await request.form()
        raw = form.get("pks")
        ids = selected_ids(raw if isinstance(raw, str) else "")
        for row_id in ids:
            details = await run_audited(
                request,
                action=action,
                target=f"{self.identity}:{row_id}",
                change=functools.partial(_for_row, change, row_id),
            )
            if details is not None:
                Flash.success(request, await done(row_id, details))
        if len(ids) == 1:
            return RedirectResponse(
                request.url_for("admin:details", identity=self.identity, pk=ids[0]),
                status_code=303,
            )
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 303)
