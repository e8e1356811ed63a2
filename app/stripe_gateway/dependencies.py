from typing import Annotated

from fastapi import Depends, Request

from app.stripe_gateway.client import StripeGateway


def get_stripe_gateway(request: Request) -> StripeGateway:
    gateway: StripeGateway = request.app.state.stripe_gateway
    return gateway


StripeGatewayDep = Annotated[StripeGateway, Depends(get_stripe_gateway)]
