"""Plans and add-ons: edited through the plans service (its rules and its errors, as the admin
API's PATCH), then carried to Stripe by the same sync as `billing create-stripe-products`."""

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqladmin import action, expose
from sqladmin.flash import Flash
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.console import service as console_service
from app.console.actions import ConsoleModelView, operator_of, run_audited, selected_ids
from app.console.context import console_context
from app.core.errors import AppError
from app.models import AddOn, SubscriptionPlan
from app.plans import service as plans_service
from app.plans.schemas import AddOnUpdate, PartialUpdate, PlanUpdate
from app.plans.stripe_catalog import sync_catalog_to_stripe

Kind = Literal["text", "textarea", "int", "optional_int", "rate", "json", "bool"]


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: Kind
    hint: str = ""


PLAN_FIELDS = (
    FormField("name", "Name", "text"),
    FormField("description", "Description", "textarea"),
    FormField("monthly_price", "Monthly price", "int", "Minor units (cents)."),
    FormField("yearly_price", "Yearly price", "int", "Minor units (cents)."),
    FormField("included_minutes", "Included minutes", "int"),
    FormField("max_agents", "Agents included", "int"),
    FormField("overage_rate_per_minute", "Overage per minute", "rate", "Minor units, decimal."),
    FormField("overage_rate_per_agent", "Overage per agent", "rate", "Minor units, decimal."),
    FormField("features", "Features", "json", 'A JSON object of flags: {"api_access": true}'),
    FormField("trial_days", "Trial days", "optional_int", "Empty: TRIAL_PERIOD_DAYS applies."),
    FormField("sort_order", "Sort order", "int"),
    FormField("is_active", "Offered to new subscribers", "bool"),
)

ADD_ON_FIELDS = (
    FormField("name", "Name", "text"),
    FormField("description", "Description", "textarea"),
    FormField("monthly_price", "Monthly price", "int", "Minor units (cents) per unit."),
    FormField("yearly_price", "Yearly price", "int", "Minor units (cents) per unit."),
    FormField("extra_minutes", "Extra minutes per unit", "int"),
    FormField("extra_agents", "Extra agents per unit", "int"),
    FormField("features", "Features", "json", 'A JSON object of flags: {"api_access": true}'),
    FormField("max_quantity", "Most units per subscription", "int"),
    FormField("is_active", "Offered to new subscribers", "bool"),
)

_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _shown(row: SubscriptionPlan | AddOn, field: FormField) -> object:
    value = getattr(row, field.name)
    if field.kind == "json":
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


def _parsed(form_value: object, field: FormField) -> tuple[object, str | None]:
    """The form's text as the JSON value the schema validates, or an error for the field."""
    if field.kind == "bool":
        return form_value is not None, None
    text = form_value.strip() if isinstance(form_value, str) else ""
    if field.kind in ("int", "optional_int"):
        if field.kind == "optional_int" and not text:
            return None, None
        if not _INTEGER.fullmatch(text):
            return text, "a whole number"
        return int(text), None
    if field.kind == "json":
        try:
            return json.loads(text or "{}"), None
        except ValueError:
            return text, "not JSON"
    return (form_value if isinstance(form_value, str) else ""), None


def _plain(value: object) -> object:
    # Audit details are JSON: decimals as their exact text.
    return value if isinstance(value, str | int | bool | dict | list | None) else str(value)


class CatalogView(ConsoleModelView):
    fields: tuple[FormField, ...] = ()
    update_schema: type[PartialUpdate] = PartialUpdate
    kind = "plan"
    confirmations = {
        "sync": ("Create what is missing on Stripe for every plan and add-on?", "Sync to Stripe"),
    }

    async def _row(self, session: AsyncSession, row_id: int) -> SubscriptionPlan | AddOn | None:
        raise NotImplementedError

    async def _update(
        self, session: AsyncSession, row_id: int, update: PartialUpdate
    ) -> SubscriptionPlan | AddOn:
        raise NotImplementedError

    async def _form(
        self,
        request: Request,
        row: SubscriptionPlan | AddOn,
        values: dict[str, object],
        errors: dict[str, str],
        status_code: int = 200,
    ) -> Response:
        response: Response = await self.templates.TemplateResponse(
            request,
            "console/catalog_form.html",
            {
                "model_view": self,
                "row": row,
                "fields": self.fields,
                "values": values,
                "errors": errors,
                "post_url": request.url_for(f"admin:view-{self.identity}-save"),
                "back_url": request.url_for("admin:details", identity=self.identity, pk=row.id),
            },
            status_code=status_code,
        )
        return response

    async def _load(self, request: Request, raw_id: str) -> SubscriptionPlan | AddOn | None:
        if not raw_id.isdigit() or int(raw_id) > 2**63 - 1:
            return None
        async with console_context(request).sessionmaker() as session:
            return await self._row(session, int(raw_id))

    async def edit_form(self, request: Request) -> Response:
        ids = selected_ids(request.query_params.get("pks", ""))
        row = await self._load(request, ids[0]) if len(ids) == 1 else None
        if row is None:
            Flash.error(request, f"Choose one {self.kind} to edit.")
            return RedirectResponse(request.url_for("admin:list", identity=self.identity), 303)
        values = {field.name: _shown(row, field) for field in self.fields}
        return await self._form(request, row, values, {})

    @expose("/save", methods=["POST"])
    async def save(self, request: Request) -> Response:
        form = await request.form()
        raw_id = form.get("pks")
        row = await self._load(request, raw_id if isinstance(raw_id, str) else "")
        if row is None:
            Flash.error(request, f"No such {self.kind}.")
            return RedirectResponse(request.url_for("admin:list", identity=self.identity), 303)
        submitted = {field.name: form.get(field.name) for field in self.fields}
        payload: dict[str, object] = {}
        errors: dict[str, str] = {}
        for field in self.fields:
            payload[field.name], error = _parsed(submitted[field.name], field)
            if error:
                errors[field.name] = error
        update = None
        try:
            # The fields that parsed, checked by the API's own schema: every error at once.
            update = self.update_schema.model_validate(
                {name: value for name, value in payload.items() if name not in errors}
            )
        except ValidationError as invalid:
            for problem in invalid.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                errors.setdefault(name, problem["msg"].removeprefix("Value error, "))
        if errors or update is None:
            shown = {
                field.name: submitted[field.name] if field.kind != "bool" else payload[field.name]
                for field in self.fields
            }
            return await self._form(request, row, shown, errors, status_code=422)
        changed = {
            name: value for name, value in update.changes().items() if getattr(row, name) != value
        }
        if not changed:
            Flash.info(request, "Nothing changed.")
        else:
            only_changed = self.update_schema.model_validate(
                {name: payload[name] for name in changed}
            )

            async def change(session: AsyncSession, now: datetime) -> dict[str, Any]:
                await self._update(session, row.id, only_changed)
                return {
                    "changed": {
                        name: [_plain(getattr(row, name)), _plain(value)]
                        for name, value in changed.items()
                    }
                }

            saved = await run_audited(
                request, action=f"{self.kind}.update", target=f"{self.kind}:{row.id}", change=change
            )
            if saved is not None:
                Flash.success(
                    request,
                    f"{row.slug} saved ({', '.join(changed)}). Sync to Stripe to carry it there.",
                )
        return RedirectResponse(
            request.url_for("admin:details", identity=self.identity, pk=row.id), 303
        )

    @action("sync", "Sync to Stripe", add_in_list=True, add_in_detail=False)
    async def sync_confirm(self, request: Request) -> Response:
        return await self.confirm(
            request,
            "sync",
            needs_ids=False,
            options=(("force_update", "Replace prices whose amount changed (--force-update)"),),
        )

    @expose("/sync", methods=["POST"])
    async def sync(self, request: Request) -> Response:
        """`billing create-stripe-products [--force-update]`, audited with its report."""
        form = await request.form()
        force_update = form.get("force_update") is not None
        context = console_context(request)
        outcome: console_service.Outcome = "done"
        details: dict[str, Any]
        try:
            reports = await sync_catalog_to_stripe(
                sessionmaker=context.sessionmaker,
                gateway=context.gateway,
                force_update=force_update,
            )
        except AppError as error:
            outcome = "failed"
            details = {"force_update": force_update, "code": error.code}
            Flash.error(request, f"Sync to Stripe stopped: {error.detail_message}")
        else:
            details = {
                "force_update": force_update,
                "actions": {r.entry: r.actions for r in reports if r.actions},
                "differences": {r.entry: r.differences for r in reports if r.differences},
            }
            done = sum(len(r.actions) for r in reports)
            differing = [r.entry for r in reports if r.differences]
            message = f"Synced to Stripe: {done} change(s) made."
            if differing and not force_update:
                message += f" Differs on Stripe: {', '.join(differing)} (sync with replace)."
            Flash.success(request, message)
        async with context.sessionmaker.begin() as session:
            await console_service.record_action(
                session,
                actor_user_id=operator_of(request),
                action="catalog.sync",
                target="catalog",
                now=context.clock.now(),
                outcome=outcome,
                details=details,
            )
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 303)


class PlanView(CatalogView, model=SubscriptionPlan):
    name = "Plan"
    name_plural = "Plans"
    icon = "fa-solid fa-layer-group"
    fields = PLAN_FIELDS
    update_schema = PlanUpdate
    kind = "plan"
    column_list = [
        SubscriptionPlan.id,
        SubscriptionPlan.slug,
        SubscriptionPlan.name,
        SubscriptionPlan.monthly_price,
        SubscriptionPlan.yearly_price,
        SubscriptionPlan.included_minutes,
        SubscriptionPlan.max_agents,
        SubscriptionPlan.is_active,
        SubscriptionPlan.stripe_monthly_price_id,
    ]
    column_default_sort = (SubscriptionPlan.sort_order, False)

    async def _row(self, session: AsyncSession, row_id: int) -> SubscriptionPlan | None:
        return await plans_service.find_plan(session, row_id)

    async def _update(
        self, session: AsyncSession, row_id: int, update: PartialUpdate
    ) -> SubscriptionPlan:
        assert isinstance(update, PlanUpdate)
        return await plans_service.update_plan(session, plan_id=row_id, plan_update=update)

    @action("edit-plan", "Edit", add_in_list=False, add_in_detail=True)
    async def edit(self, request: Request) -> Response:
        return await self.edit_form(request)


class AddOnView(CatalogView, model=AddOn):
    name = "Add-on"
    name_plural = "Add-ons"
    icon = "fa-solid fa-puzzle-piece"
    fields = ADD_ON_FIELDS
    update_schema = AddOnUpdate
    kind = "add_on"
    column_list = [
        AddOn.id,
        AddOn.slug,
        AddOn.name,
        AddOn.monthly_price,
        AddOn.yearly_price,
        AddOn.extra_minutes,
        AddOn.extra_agents,
        AddOn.is_active,
        AddOn.stripe_monthly_price_id,
    ]
    column_default_sort = (AddOn.id, False)

    async def _row(self, session: AsyncSession, row_id: int) -> AddOn | None:
        return await plans_service.find_add_on(session, row_id)

    async def _update(self, session: AsyncSession, row_id: int, update: PartialUpdate) -> AddOn:
        assert isinstance(update, AddOnUpdate)
        return await plans_service.update_add_on(session, add_on_id=row_id, add_on_update=update)

    @action("edit-add-on", "Edit", add_in_list=False, add_in_detail=True)
    async def edit(self, request: Request) -> Response:
        return await self.edit_form(request)
