from typing import Annotated, ClassVar

from pydantic import Field, StrictBool, StringConstraints, ValidationInfo, field_validator

from app.core.schemas import (
    CurrencyCode,
    FeatureFlags,
    InputSchema,
    MinorUnits,
    Rate,
    Schema,
    Slug,
    SuccessResponse,
)
from app.models import AddOn, SubscriptionPlan

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Count = Annotated[int, Field(ge=0, le=10**9, strict=True)]
TrialDays = Annotated[int, Field(ge=0, le=730, strict=True)]


class PlanPublic(Schema):
    id: int
    slug: str
    name: str
    description: str
    currency: str
    monthly_price: int = Field(description="Minor units of `currency` per month.")
    yearly_price: int = Field(description="Minor units of `currency` per year.")
    included_minutes: int = Field(description="Call minutes included per monthly period.")
    max_agents: int = Field(description="Agents included; more are billed per agent.")
    overage_rate_per_minute: Rate = Field(description="Minor units per minute over the allowance.")
    overage_rate_per_agent: Rate = Field(description="Minor units per agent over the limit.")
    features: dict[str, bool]
    trial_days: int = Field(description="Trial length for a new subscription to this plan.")
    is_active: bool

    @classmethod
    def from_plan(cls, plan: SubscriptionPlan, default_trial_days: int) -> "PlanPublic":
        return cls.model_validate(
            {**_columns(plan), "trial_days": _trial_days(plan, default_trial_days)}
        )


class PlanAdmin(PlanPublic):
    trial_days_override: int | None = Field(
        description="The plan's own trial length; null means TRIAL_PERIOD_DAYS applies."
    )
    sort_order: int
    stripe_product_id: str | None
    stripe_monthly_price_id: str | None
    stripe_yearly_price_id: str | None

    @classmethod
    def from_plan(cls, plan: SubscriptionPlan, default_trial_days: int) -> "PlanAdmin":
        return cls.model_validate(
            {
                **_columns(plan),
                "trial_days": _trial_days(plan, default_trial_days),
                "trial_days_override": plan.trial_days,
            }
        )


def _columns(row: SubscriptionPlan | AddOn) -> dict[str, object]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def _trial_days(plan: SubscriptionPlan, default_trial_days: int) -> int:
    return default_trial_days if plan.trial_days is None else plan.trial_days


class AddOnPublic(Schema):
    id: int
    slug: str
    name: str
    description: str
    currency: str
    monthly_price: int = Field(description="Minor units of `currency` per unit per month.")
    yearly_price: int = Field(description="Minor units of `currency` per unit per year.")
    extra_minutes: int = Field(description="Call minutes one unit adds per monthly period.")
    extra_agents: int = Field(description="Agents one unit adds.")
    features: dict[str, bool]
    max_quantity: int
    is_active: bool


class AddOnAdmin(AddOnPublic):
    stripe_product_id: str | None
    stripe_monthly_price_id: str | None
    stripe_yearly_price_id: str | None


class PlanCreate(InputSchema):
    slug: Slug
    name: Name
    description: Description = ""
    currency: CurrencyCode | None = Field(
        default=None, description="Defaults to BILLING_CURRENCY, the only one accepted."
    )
    monthly_price: MinorUnits
    yearly_price: MinorUnits
    included_minutes: Count
    max_agents: Annotated[int, Field(ge=1, le=10**6, strict=True)]
    overage_rate_per_minute: Rate
    overage_rate_per_agent: Rate
    features: FeatureFlags = Field(default_factory=dict)
    trial_days: TrialDays | None = None
    sort_order: Annotated[int, Field(ge=0, le=10**6, strict=True)] = 0


class PartialUpdate(InputSchema):
    """A PATCH body: only the fields sent change; null is refused except where it means reset."""

    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    # Runs only for fields the client sent, so an absent field stays "unchanged".
    @field_validator("*", mode="after")
    @classmethod
    def _refuse_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in cls.nullable_fields:
            raise ValueError("cannot be null")
        return value

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PlanUpdate(PartialUpdate):
    # null trial_days: the plan follows TRIAL_PERIOD_DAYS again.
    nullable_fields: ClassVar[frozenset[str]] = frozenset({"trial_days"})

    name: Name | None = None
    description: Description | None = None
    monthly_price: MinorUnits | None = None
    yearly_price: MinorUnits | None = None
    included_minutes: Count | None = None
    max_agents: Annotated[int, Field(ge=1, le=10**6, strict=True)] | None = None
    overage_rate_per_minute: Rate | None = None
    overage_rate_per_agent: Rate | None = None
    features: FeatureFlags | None = None
    trial_days: TrialDays | None = None
    sort_order: Annotated[int, Field(ge=0, le=10**6, strict=True)] | None = None
    is_active: StrictBool | None = None


class AddOnCreate(InputSchema):
    slug: Slug
    name: Name
    description: Description = ""
    currency: CurrencyCode | None = Field(
        default=None, description="Defaults to BILLING_CURRENCY, the only one accepted."
    )
    monthly_price: MinorUnits
    yearly_price: MinorUnits
    extra_minutes: Count = 0
    extra_agents: Count = 0
    features: FeatureFlags = Field(default_factory=dict)
    max_quantity: Annotated[int, Field(ge=1, le=1000, strict=True)] = 1


class AddOnUpdate(PartialUpdate):
    name: Name | None = None
    description: Description | None = None
    monthly_price: MinorUnits | None = None
    yearly_price: MinorUnits | None = None
    extra_minutes: Count | None = None
    extra_agents: Count | None = None
    features: FeatureFlags | None = None
    max_quantity: Annotated[int, Field(ge=1, le=1000, strict=True)] | None = None
    is_active: StrictBool | None = None


class CatalogResponse(SuccessResponse):
    plans: list[PlanPublic]
    add_ons: list[AddOnPublic]


class PlanResponse(SuccessResponse):
    plan: PlanPublic


class AdminPlanListResponse(SuccessResponse):
    plans: list[PlanAdmin]


class AdminPlanResponse(SuccessResponse):
    plan: PlanAdmin


class AdminAddOnListResponse(SuccessResponse):
    add_ons: list[AddOnAdmin]


class AdminAddOnResponse(SuccessResponse):
    add_on: AddOnAdmin
