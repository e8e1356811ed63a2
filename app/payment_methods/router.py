from typing import Annotated

from fastapi import Path

from app.core.db import SessionmakerDep
from app.core.deps import AttemptTokenDep, RedisDep
from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.core.schemas import (
    PAYMENT_METHOD_ID_MAX_LENGTH,
    PAYMENT_METHOD_ID_PATTERN,
    SuccessResponse,
)
from app.customers.dependencies import CurrentCustomer
from app.payment_methods import service
from app.payment_methods.errors import LastPaymentMethod
from app.payment_methods.schemas import (
    AttachPaymentMethodRequest,
    PaymentMethodListResponse,
    PaymentMethodPublic,
    PaymentMethodResponse,
    SetupIntentResponse,
)
from app.stripe_gateway.dependencies import StripeGatewayDep
from app.stripe_gateway.errors import (
    PaymentMethodNotFound,
    PaymentMethodUnusable,
    StripeUnavailable,
)

router = SlashTolerantRouter(
    prefix="/payment-methods",
    tags=["payment methods"],
    responses=error_responses(Unauthorized, StripeUnavailable),
)

PaymentMethodIdPath = Annotated[
    str, Path(pattern=PAYMENT_METHOD_ID_PATTERN, max_length=PAYMENT_METHOD_ID_MAX_LENGTH)
]


@router.get("/", response_model=PaymentMethodListResponse, summary="The account's cards")
async def list_payment_methods(
    customer: CurrentCustomer, sessionmaker: SessionmakerDep, gateway: StripeGatewayDep
) -> PaymentMethodListResponse:
    cards = await service.list_payment_methods(
        sessionmaker=sessionmaker, gateway=gateway, customer=customer
    )
    return PaymentMethodListResponse(
        payment_methods=[PaymentMethodPublic.model_validate(card) for card in cards]
    )


@router.post(
    "/",
    response_model=PaymentMethodResponse,
    responses=error_responses(PaymentMethodNotFound, PaymentMethodUnusable),
    summary="Attach a card",
)
async def attach_payment_method(
    attach_request: AttachPaymentMethodRequest,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    attempt: AttemptTokenDep,
    redis: RedisDep,
) -> PaymentMethodResponse:
    card = await service.attach_payment_method(
        sessionmaker=sessionmaker,
        gateway=gateway,
        redis=redis,
        customer=customer,
        payment_method_id=attach_request.payment_method_id,
        set_default=attach_request.set_default,
        attempt=attempt,
    )
    return PaymentMethodResponse(payment_method=PaymentMethodPublic.model_validate(card))


@router.post(
    "/setup-intent/",
    response_model=SetupIntentResponse,
    summary="A SetupIntent to add a card with Stripe.js (SCA)",
)
async def create_setup_intent(
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    attempt: AttemptTokenDep,
) -> SetupIntentResponse:
    client_secret = await service.create_setup_intent(
        sessionmaker=sessionmaker, gateway=gateway, customer=customer, attempt=attempt
    )
    return SetupIntentResponse(client_secret=client_secret)


@router.post(
    "/{payment_method_id}/default/",
    response_model=PaymentMethodResponse,
    responses=error_responses(PaymentMethodNotFound),
    summary="Make a card the default",
)
async def make_default(
    payment_method_id: PaymentMethodIdPath,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    attempt: AttemptTokenDep,
    redis: RedisDep,
) -> PaymentMethodResponse:
    card = await service.make_default(
        sessionmaker=sessionmaker,
        gateway=gateway,
        redis=redis,
        customer=customer,
        payment_method_id=payment_method_id,
        attempt=attempt,
    )
    return PaymentMethodResponse(payment_method=PaymentMethodPublic.model_validate(card))


@router.delete(
    "/{payment_method_id}/",
    response_model=SuccessResponse,
    responses=error_responses(PaymentMethodNotFound, LastPaymentMethod),
    summary="Detach a card",
)
async def detach_payment_method(
    payment_method_id: PaymentMethodIdPath,
    customer: CurrentCustomer,
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    attempt: AttemptTokenDep,
) -> SuccessResponse:
    await service.detach_payment_method(
        sessionmaker=sessionmaker,
        gateway=gateway,
        customer=customer,
        payment_method_id=payment_method_id,
        attempt=attempt,
    )
    return SuccessResponse()
