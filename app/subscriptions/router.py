from typing import Annotated

from fastapi import Query

from app.core.db import SessionDep, SessionmakerDep
from app.core.deps import AttemptTokenDep, ClockDep, RedisDep, SettingsDep
from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.customers.dependencies import CurrentCustomer
from app.plans.errors import AddOnNotFound, PlanNotFound
from app.stripe_gateway.dependencies import StripeGatewayDep
from app.stripe_gateway.errors import (
    PaymentDeclined,
    PaymentMethodNotFound,
    PaymentMethodUnusable,
    StripeUnavailable,
)
from app.subscriptions import checkout, service
from app.subscriptions.errors import (
    ActionNotAllowed,
    AddOnQuantityInvalid,
    PlanNotAvailable,
    PlanNotSynced,
    SubscriptionExists,
    SubscriptionNotFound,
)
from app.subscriptions.schemas import (
    BillingCycle,
    BillingPortalPublic,
    BillingPortalResponse,
    ChangePreviewResponse,
    CheckoutSessionPublic,
    CheckoutSessionRequest,
    CheckoutSessionResponse,
    ManageRequest,
    PlanReference,
    SubscribeRequest,
    SubscriptionResponse,
)

router = SlashTolerantRouter(
    tags=["subscriptions"], responses=error_responses(Unauthorized, StripeUnavailable)
)


@router.post(
    "/subscribe/",
    response_model=SubscriptionResponse,
    responses=error_responses(
        PlanNotFound,
        PlanNotAvailable,
        PlanNotSynced,
        AddOnNotFound,
        AddOnQuantityInvalid,
        SubscriptionExists,
        PaymentDeclined,
        PaymentMethodNotFound,
        PaymentMethodUnusable,
    ),
    summary="Subscribe to a plan",
)
async def subscribe(
    subscribe_request: SubscribeRequest,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    clock: ClockDep,
    settings: SettingsDep,
    attempt: AttemptTokenDep,
) -> SubscriptionResponse:
    """Create the subscription and charge its first invoice (or start its trial).

    `requires_action: true` with a `client_secret`: confirm the payment (or, during a trial,
    the card) with Stripe.js. A declined card is a 402 with Stripe's `decline_code`; subscribe
    again with another card to pay the same invoice.
    """
    return await service.subscribe(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        settings=settings,
        customer=customer,
        subscribe_request=subscribe_request,
        attempt=attempt,
    )


@router.get(
    "/manage/",
    response_model=SubscriptionResponse,
    responses=error_responses(SubscriptionNotFound),
    summary="The current subscription",
)
async def get_subscription(customer: CurrentCustomer, session: SessionDep) -> SubscriptionResponse:
    return SubscriptionResponse(
        subscription=await service.get_current_subscription(session, customer)
    )


@router.post(
    "/manage/",
    response_model=SubscriptionResponse,
    responses=error_responses(
        SubscriptionNotFound,
        ActionNotAllowed,
        PlanNotFound,
        PlanNotAvailable,
        AddOnNotFound,
        AddOnQuantityInvalid,
        PaymentDeclined,
    ),
    summary="Change, cancel or reactivate the subscription; add or remove add-ons",
)
async def manage_subscription(
    manage_request: ManageRequest,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    redis: RedisDep,
    clock: ClockDep,
    attempt: AttemptTokenDep,
) -> SubscriptionResponse:
    """Actions: `upgrade` (now, prorated and charged at once), `downgrade` (at the period
    end), `change_plan` (decides which), `cancel_pending_change`, `cancel` (`at_period_end`,
    default true), `reactivate`, `add_addon` / `remove_addon` (`addon_id`, `quantity`)."""
    return await service.manage(
        sessionmaker=sessionmaker,
        gateway=gateway,
        redis=redis,
        clock=clock,
        customer=customer,
        manage_request=manage_request,
        attempt=attempt,
    )


@router.get(
    "/manage/preview/",
    response_model=ChangePreviewResponse,
    responses=error_responses(SubscriptionNotFound, ActionNotAllowed, PlanNotFound),
    summary="Preview a plan or cycle change",
)
async def preview_change(
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    clock: ClockDep,
    plan_id: Annotated[PlanReference | None, Query()] = None,
    billing_cycle: Annotated[BillingCycle | None, Query()] = None,
) -> ChangePreviewResponse:
    preview = await service.preview_change(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        customer=customer,
        plan_reference=plan_id,
        billing_cycle=billing_cycle,
    )
    return ChangePreviewResponse(preview=preview)


@router.post(
    "/checkout-session/",
    response_model=CheckoutSessionResponse,
    responses=error_responses(
        PlanNotFound,
        PlanNotAvailable,
        PlanNotSynced,
        AddOnNotFound,
        AddOnQuantityInvalid,
        SubscriptionExists,
    ),
    summary="Start a Stripe Checkout for a plan",
)
async def create_checkout_session(
    checkout_request: CheckoutSessionRequest,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    clock: ClockDep,
    settings: SettingsDep,
    attempt: AttemptTokenDep,
) -> CheckoutSessionResponse:
    """A Checkout Session in subscription mode for the plan, cycle and add-ons (the prices,
    trial and tax of `subscribe/`): send the customer to its `url`. Stripe sends them back to
    `STRIPE_SUCCESS_URL` (with `session_id`) or `STRIPE_CANCEL_URL`; the subscription appears
    in `manage/` once Stripe's `checkout.session.completed` is processed. A new checkout
    replaces one still open; an account with a subscription is 409 `subscription_exists`."""
    created = await checkout.start_checkout(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        settings=settings,
        customer=customer,
        request=checkout_request,
        attempt=attempt,
    )
    return CheckoutSessionResponse(
        checkout_session=CheckoutSessionPublic(
            id=created.id, url=created.url or "", expires_at=created.expires_at
        )
    )


@router.post(
    "/billing-portal/",
    response_model=BillingPortalResponse,
    summary="Open Stripe's billing portal",
)
async def open_billing_portal(
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    settings: SettingsDep,
) -> BillingPortalResponse:
    """A billing portal session for the customer (cards, invoices, and what the portal's
    configuration on Stripe allows); its return link is `STRIPE_PORTAL_RETURN_URL`. Changes
    made there reach the service as webhooks."""
    url = await checkout.open_billing_portal(
        sessionmaker=sessionmaker, gateway=gateway, settings=settings, customer=customer
    )
    return BillingPortalResponse(billing_portal=BillingPortalPublic(url=url))
