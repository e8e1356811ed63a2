from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import InputSchema, PaymentMethodId, SuccessResponse


class PaymentMethodPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(validation_alias="stripe_payment_method_id")
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool


class AttachPaymentMethodRequest(InputSchema):
    payment_method_id: PaymentMethodId
    set_default: bool = False


class PaymentMethodListResponse(SuccessResponse):
    payment_methods: list[PaymentMethodPublic]


class PaymentMethodResponse(SuccessResponse):
    payment_method: PaymentMethodPublic


class SetupIntentResponse(SuccessResponse):
    client_secret: Annotated[str, Field(description="Confirm with Stripe.js confirmCardSetup.")]
