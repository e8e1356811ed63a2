from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from app.core.errors import ErrorBody
from app.core.schemas import InputSchema, Rate, SuccessResponse
from app.subscriptions.schemas import PlanSummary

MAX_BATCH_RECORDS = 1000


def _user_id_text(value: object) -> object:
    # The dashboard's user ids are numbers in SimpleJWT tokens; accept both spellings.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _as_utc(value: datetime) -> datetime:
    # SPEC §5: timestamps are UTC; one without an offset is read as UTC.
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        # Year 1 or 9999 with an offset leaves datetime's range: bad input, not a crash.
        raise ValueError("timestamp is out of range") from None


def _format_minutes(value: Decimal) -> str:
    return format(value.normalize(), "f")


CustomerReference = Annotated[
    str,
    BeforeValidator(_user_id_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
]
CallId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
UtcTimestamp = Annotated[datetime, AfterValidator(_as_utc)]
# Minutes are exact decimals in JSON strings ("1.5"), like rates: no float touches them.
MinutesValue = Annotated[
    Decimal, PlainSerializer(_format_minutes, return_type=str, when_used="json")
]


class UsageRecordCreate(InputSchema):
    """One call (`minutes_used` or `duration_seconds`, with its `call_id`) or one reading of
    active agents (`agents_active`)."""

    customer_id: CustomerReference | None = Field(
        default=None,
        description="The dashboard user id; service tokens name it, user tokens may omit it.",
    )
    call_id: CallId | None = Field(
        default=None, description="Unique per call: the same call_id is counted once."
    )
    minutes_used: (
        Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=4, allow_inf_nan=False)] | None
    ) = None
    duration_seconds: (
        Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=3, allow_inf_nan=False)] | None
    ) = Field(default=None, description="Rounded to minutes by the plan's `call_rounding`.")
    agents_active: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] | None = None
    timestamp: UtcTimestamp | None = Field(
        default=None, description="When the call ended or the agents were counted; now if absent."
    )

    @model_validator(mode="after")
    def _one_measurement(self) -> "UsageRecordCreate":
        measurements = (
            (self.minutes_used is not None)
            + (self.duration_seconds is not None)
            + (self.agents_active is not None)
        )
        if measurements != 1:
            raise ValueError("send exactly one of minutes_used, duration_seconds and agents_active")
        if self.agents_active is None and self.call_id is None:
            raise ValueError("a call's usage needs its call_id")
        if self.agents_active is not None and self.call_id is not None:
            raise ValueError("an agents reading carries no call_id")
        return self


# A record that does not parse is kept as it was sent, to be answered `invalid` on its own:
# one bad record never rejects the batch. Every other record is validated here, with the
# whole body, in one pass of pydantic's core.
BatchRecord = Annotated[UsageRecordCreate | Any, Field(union_mode="left_to_right")]


class UsageBatchRequest(BaseModel):
    # Not an InputSchema: the records are checked, and refused, one by one.
    model_config = ConfigDict(extra="forbid")

    records: Annotated[list[BatchRecord], Field(min_length=1, max_length=MAX_BATCH_RECORDS)] = (
        Field(
            description="Up to 1,000 objects shaped as the body of POST usage/; a service "
            "token names `customer_id` in each."
        )
    )


class UsageRecordPublic(BaseModel):
    id: int
    kind: Literal["minutes", "agents"]
    call_id: str | None
    minutes: MinutesValue | None
    agents: int | None
    timestamp: datetime
    subscription_id: int
    period_start: datetime
    source: Literal["user", "service"]


class UsageRecordResponse(SuccessResponse):
    duplicate: bool = Field(description="The same record was already counted; nothing changed.")
    replaced: bool = Field(
        default=False,
        description="The telephony backend's record replaced one a user token sent first.",
    )
    usage_record: UsageRecordPublic


class BatchRecordResult(BaseModel):
    index: int
    status: Literal["created", "duplicate", "conflict", "invalid"] = Field(
        description="`conflict` where POST usage/ would answer 409, `invalid` for other errors."
    )
    call_id: str | None = None
    record_id: int | None = None
    replaced: bool = False
    error: ErrorBody | None = None


class BatchCounts(BaseModel):
    created: int
    duplicate: int
    conflict: int
    invalid: int


class UsageBatchResponse(SuccessResponse):
    results: list[BatchRecordResult]
    counts: BatchCounts


class DailyUsage(BaseModel):
    date: date
    minutes: MinutesValue


class OverageSummary(BaseModel):
    minutes: MinutesValue = Field(description="Minutes beyond the included ones.")
    agents: int = Field(description="Peak agents beyond the allowed ones.")
    minutes_amount: int = Field(description="Minor units of `currency`.")
    agents_amount: int = Field(description="Minor units of `currency`.")
    amount: int = Field(description="Minor units of `currency`: the two lines' sum.")


class UsageSummary(BaseModel):
    subscription_id: int
    status: str
    period_start: datetime
    period_end: datetime
    currency: str
    minutes_used: MinutesValue
    minutes_included: int = Field(description="The plan's minutes plus the add-ons'.")
    minutes_remaining: MinutesValue
    peak_agents: int
    agents_allowed: int = Field(description="The plan's agents plus the add-ons'.")
    overage_rate_per_minute: Rate
    overage_rate_per_agent: Rate
    overage: OverageSummary = Field(description="Accrued so far this period (none in a trial).")
    projected_minutes: MinutesValue = Field(
        description="Minutes by the period's end at the rate seen so far (at least one day)."
    )
    projected_overage: OverageSummary
    daily: list[DailyUsage] = Field(description="Minutes per UTC day of the period, to today.")


class UsageSummaryResponse(SuccessResponse):
    usage: UsageSummary


class EntitlementLimits(BaseModel):
    included_minutes: int = Field(description="Per monthly period: the plan's plus the add-ons'.")
    agents_allowed: int = Field(description="The plan's agents plus the add-ons'.")


class EntitlementAddOn(BaseModel):
    addon_id: int
    slug: str
    name: str
    quantity: int
    extra_minutes: int = Field(description="Minutes the add-on adds, for its whole quantity.")
    extra_agents: int = Field(description="Agents the add-on adds, for its whole quantity.")


EntitlementReason = Literal[
    "no_subscription",
    "subscription_not_started",
    "trial_minutes_exhausted",
    "grace_period_expired",
    "payment_overdue",
    "unpaid",
    "canceled",
    "incomplete_expired",
    "paused",
    "suspended",
]


class Entitlements(BaseModel):
    customer_id: str
    subscription_id: int | None
    status: str | None
    plan: PlanSummary | None
    period_start: datetime | None
    period_end: datetime | None
    limits: EntitlementLimits
    minutes_used: MinutesValue
    minutes_remaining: MinutesValue
    peak_agents: int
    features: dict[str, bool]
    add_ons: list[EntitlementAddOn]
    call_allowed: bool = Field(
        description="Whether the next call may be placed; 100% of the minutes does not block "
        "it (the calls become overage) except during a trial."
    )
    suspended: bool = Field(
        description="Access is suspended (unpaid, canceled, grace over, or by an operator)."
    )
    reason: EntitlementReason | None = Field(
        description="Why `call_allowed` is false; null when it is true. `payment_overdue`: "
        "a failed payment's retries and grace period are used up; `suspended`: an operator's."
    )
    in_grace: bool = Field(
        default=False,
        description="A payment failed; access is kept while the service retries it.",
    )
    grace_period_end: datetime | None = Field(
        default=None, description="When access stops if the payment is still not through."
    )
    next_payment_retry: datetime | None = Field(
        default=None, description="The service's next attempt at the failed payment."
    )


class EntitlementsResponse(SuccessResponse):
    entitlements: Entitlements
