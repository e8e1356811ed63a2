from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.core.schemas import InputSchema, PaymentMethodId, SuccessResponse

BillingCycle = Literal["monthly", "yearly"]
# The seed's dashboard sends a plan's id; its own ids looked like "plan_123", so a slug works
# too.
PlanReference = (
    Annotated[int, Field(ge=1, le=2**63 - 1)]
    | Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
)
Quantity = Annotated[int, Field(ge=1, le=1000, strict=True)]


class AddOnSelection(InputSchema):
    addon_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    quantity: Quantity = 1


class SubscribeRequest(InputSchema):
    plan_id: PlanReference
    payment_method_id: PaymentMethodId
    billing_cycle: BillingCycle = "monthly"
    add_ons: Annotated[list[AddOnSelection], Field(max_length=20)] = Field(default_factory=list)


class CheckoutSessionRequest(InputSchema):
    plan_id: PlanReference
    billing_cycle: BillingCycle = "monthly"
    add_ons: Annotated[list[AddOnSelection], Field(max_length=20)] = Field(default_factory=list)


class CheckoutSessionPublic(BaseModel):
    id: str = Field(description="The Checkout Session's id (`cs_...`).")
    url: str = Field(description="Stripe's hosted payment page: send the customer there.")
    expires_at: datetime | None = Field(
        description="When the session stops taking payment; the account's slot is free again."
    )


class CheckoutSessionResponse(SuccessResponse):
    checkout_session: CheckoutSessionPublic


class BillingPortalPublic(BaseModel):
    url: str = Field(description="Stripe's billing portal for the customer; short-lived.")


class BillingPortalResponse(SuccessResponse):
    billing_portal: BillingPortalPublic


ManageAction = Literal[
    "upgrade",
    "downgrade",
    "change_plan",
    "cancel_pending_change",
    "cancel",
    "reactivate",
    "add_addon",
    "remove_addon",
]


class ManageRequest(InputSchema):
    action: ManageAction
    plan_id: PlanReference | None = None
    billing_cycle: BillingCycle | None = None
    # The proration date the customer saw in manage/preview/, so the charge matches it.
    proration_date: Annotated[int, Field(ge=0, le=2**40)] | None = None
    at_period_end: bool = True
    addon_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    quantity: Quantity | None = None


class PlanSummary(BaseModel):
    id: int
    slug: str
    name: str


class SubscriptionAddOnPublic(BaseModel):
    addon_id: int
    slug: str
    name: str
    quantity: int


class PendingChange(BaseModel):
    plan: PlanSummary
    billing_cycle: str
    effective_at: datetime | None


class SubscriptionPublic(BaseModel):
    id: int
    status: str
    plan: PlanSummary
    billing_cycle: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    add_ons: list[SubscriptionAddOnPublic]
    pending_change: PendingChange | None
    failed_payment_attempts: int
    grace_period_ends_at: datetime | None
    # The account's access suspended by an operator since then; null when not suspended.
    suspended_at: datetime | None = None
    stripe_subscription_id: str | None
    # Dunning: a payment failed and the service is retrying it, access kept meanwhile.
    in_grace: bool = Field(
        default=False,
        description="A payment failed; access is kept while the service retries it.",
    )
    grace_period_end: datetime | None = Field(
        default=None, description="When access stops if the payment is still not through."
    )
    next_payment_retry: datetime | None = None
    last_decline_code: str | None = None
    payment_action_required: bool = Field(
        default=False,
        description="The bank wants the customer to authenticate: pay the open invoice on its "
        "hosted page (the link is in the notice); retries stopped until then.",
    )
    payment_overdue_since: datetime | None = Field(
        default=None, description="Access suspended for non-payment since then."
    )


class SubscriptionResponse(SuccessResponse):
    subscription: SubscriptionPublic
    # The payment or the card needs the customer (3-D Secure): confirm with Stripe.js.
    requires_action: bool = False
    client_secret: str | None = None
    client_secret_type: Literal["payment_intent", "setup_intent"] | None = None


class ChangePreview(BaseModel):
    plan: PlanSummary
    billing_cycle: str
    takes_effect: Literal["now", "period_end"]
    effective_at: datetime | None
    currency: str
    amount_due_now: int = Field(description="Minor units charged at once for the change.")
    next_invoice_amount: int = Field(description="Minor units of the next regular invoice.")
    next_invoice_date: datetime | None
    proration_date: int = Field(description="Send back with the change to be charged this.")


class ChangePreviewResponse(SuccessResponse):
    preview: ChangePreview


class SuspendRequest(InputSchema):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class SuspensionPublic(BaseModel):
    customer_id: str
    subscription_id: int | None
    status: str | None
    suspended: bool
    suspended_at: datetime | None
    reason: str | None


class PaymentRetryPublic(BaseModel):
    attempt: int
    trigger: Literal["schedule", "operator", "new_card"]
    due_at: datetime
    status: Literal["scheduled", "running", "succeeded", "failed", "action_required", "canceled"]
    decline_code: str | None
    finished_at: datetime | None


class DunningPublic(BaseModel):
    """A subscription in dunning, for operators."""

    subscription_id: int
    customer_id: str = Field(description="The dashboard user id of the account.")
    status: str
    state: Literal["retrying", "action_required", "suspended", "ended"] = Field(
        description="`retrying`: in grace, retries ahead; `action_required`: waiting for the "
        "customer to authenticate; `suspended`: retries and grace used up, calls refused; "
        "`ended`: the subscription ended."
    )
    invoice: str
    failed_payment_attempts: int
    last_decline_code: str | None
    decline_codes: list[str]
    next_payment_retry: datetime | None
    grace_period_end: datetime | None
    payment_overdue_since: datetime | None
    retries: list[PaymentRetryPublic]


class DunningListResponse(SuccessResponse):
    dunning: list[DunningPublic]


class DunningRetryResponse(SuccessResponse):
    outcome: str = Field(
        description="What the retry came to: succeeded, failed, action_required, canceled, busy"
    )
    dunning: DunningPublic | None = Field(
        description="The subscription's dunning afterwards; null once it recovered."
    )
