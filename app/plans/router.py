from typing import Annotated

from fastapi import Path, status

from app.core.auth import BillingAdmin
from app.core.db import SessionDep
from app.core.deps import SettingsDep
from app.core.errors import Forbidden, InvalidRequest, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.plans import service
from app.plans.errors import (
    AddOnExists,
    AddOnNotFound,
    CurrencyNotSupported,
    PlanExists,
    PlanNotFound,
)
from app.plans.schemas import (
    AddOnAdmin,
    AddOnCreate,
    AddOnPublic,
    AddOnUpdate,
    AdminAddOnListResponse,
    AdminAddOnResponse,
    AdminPlanListResponse,
    AdminPlanResponse,
    CatalogResponse,
    PlanAdmin,
    PlanCreate,
    PlanPublic,
    PlanResponse,
    PlanUpdate,
)

router = SlashTolerantRouter(tags=["plans"])
admin_router = SlashTolerantRouter(
    prefix="/admin",
    tags=["admin: catalog"],
    responses=error_responses(Unauthorized, Forbidden, InvalidRequest),
)

PlanId = Annotated[int, Path(ge=1, le=2**63 - 1)]
AddOnId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/plans/", response_model=CatalogResponse, summary="Active plans and add-ons")
async def list_active_plans(settings: SettingsDep, session: SessionDep) -> CatalogResponse:
    """The plans a customer can subscribe to, with prices, limits and features (no token)."""
    catalog = await service.get_active_catalog(session)
    trial_days = settings.TRIAL_PERIOD_DAYS
    return CatalogResponse(
        plans=[PlanPublic.from_plan(plan, trial_days) for plan in catalog.plans],
        add_ons=[AddOnPublic.model_validate(add_on) for add_on in catalog.add_ons],
    )


@router.get(
    "/plans/{plan_id}/",
    response_model=PlanResponse,
    responses=error_responses(PlanNotFound),
    summary="One active plan",
)
async def get_active_plan(
    settings: SettingsDep, session: SessionDep, plan_id: PlanId
) -> PlanResponse:
    plan = await service.get_plan_or_raise(session, plan_id=plan_id, active_only=True)
    return PlanResponse(plan=PlanPublic.from_plan(plan, settings.TRIAL_PERIOD_DAYS))


@admin_router.get("/plans/", response_model=AdminPlanListResponse, summary="All plans")
async def admin_list_plans(
    settings: SettingsDep, session: SessionDep, _: BillingAdmin
) -> AdminPlanListResponse:
    plans = await service.list_plans(session)
    trial_days = settings.TRIAL_PERIOD_DAYS
    return AdminPlanListResponse(plans=[PlanAdmin.from_plan(plan, trial_days) for plan in plans])


@admin_router.post(
    "/plans/",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminPlanResponse,
    responses=error_responses(PlanExists, CurrencyNotSupported),
    summary="Create a plan",
)
async def admin_create_plan(
    settings: SettingsDep, session: SessionDep, _: BillingAdmin, plan_create: PlanCreate
) -> AdminPlanResponse:
    plan = await service.create_plan(
        session, plan_create=plan_create, billing_currency=settings.BILLING_CURRENCY
    )
    return AdminPlanResponse(plan=PlanAdmin.from_plan(plan, settings.TRIAL_PERIOD_DAYS))


@admin_router.patch(
    "/plans/{plan_id}/",
    response_model=AdminPlanResponse,
    responses=error_responses(PlanNotFound, PlanExists),
    summary="Change a plan",
)
async def admin_update_plan(
    settings: SettingsDep,
    session: SessionDep,
    _: BillingAdmin,
    plan_id: PlanId,
    plan_update: PlanUpdate,
) -> AdminPlanResponse:
    plan = await service.update_plan(session, plan_id=plan_id, plan_update=plan_update)
    return AdminPlanResponse(plan=PlanAdmin.from_plan(plan, settings.TRIAL_PERIOD_DAYS))


@admin_router.post(
    "/plans/{plan_id}/deactivate/",
    response_model=AdminPlanResponse,
    responses=error_responses(PlanNotFound),
    summary="Stop offering a plan",
)
async def admin_deactivate_plan(
    settings: SettingsDep, session: SessionDep, _: BillingAdmin, plan_id: PlanId
) -> AdminPlanResponse:
    plan = await service.deactivate_plan(session, plan_id=plan_id)
    return AdminPlanResponse(plan=PlanAdmin.from_plan(plan, settings.TRIAL_PERIOD_DAYS))


@admin_router.get("/add-ons/", response_model=AdminAddOnListResponse, summary="All add-ons")
async def admin_list_add_ons(session: SessionDep, _: BillingAdmin) -> AdminAddOnListResponse:
    add_ons = await service.list_add_ons(session)
    return AdminAddOnListResponse(add_ons=[AddOnAdmin.model_validate(a) for a in add_ons])


@admin_router.post(
    "/add-ons/",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminAddOnResponse,
    responses=error_responses(AddOnExists, CurrencyNotSupported),
    summary="Create an add-on",
)
async def admin_create_add_on(
    settings: SettingsDep, session: SessionDep, _: BillingAdmin, add_on_create: AddOnCreate
) -> AdminAddOnResponse:
    add_on = await service.create_add_on(
        session, add_on_create=add_on_create, billing_currency=settings.BILLING_CURRENCY
    )
    return AdminAddOnResponse(add_on=AddOnAdmin.model_validate(add_on))


@admin_router.patch(
    "/add-ons/{add_on_id}/",
    response_model=AdminAddOnResponse,
    responses=error_responses(AddOnNotFound, AddOnExists),
    summary="Change an add-on",
)
async def admin_update_add_on(
    session: SessionDep, _: BillingAdmin, add_on_id: AddOnId, add_on_update: AddOnUpdate
) -> AdminAddOnResponse:
    add_on = await service.update_add_on(session, add_on_id=add_on_id, add_on_update=add_on_update)
    return AdminAddOnResponse(add_on=AddOnAdmin.model_validate(add_on))


@admin_router.post(
    "/add-ons/{add_on_id}/deactivate/",
    response_model=AdminAddOnResponse,
    responses=error_responses(AddOnNotFound),
    summary="Stop offering an add-on",
)
async def admin_deactivate_add_on(
    session: SessionDep, _: BillingAdmin, add_on_id: AddOnId
) -> AdminAddOnResponse:
    add_on = await service.deactivate_add_on(session, add_on_id=add_on_id)
    return AdminAddOnResponse(add_on=AddOnAdmin.model_validate(add_on))
