"""The default catalog that `billing setup-packages` installs.

Amounts are minor units of BILLING_CURRENCY (cents for the default, usd); overage rates are
minor units per minute and per extra agent per monthly period. Yearly prices are ten months'
worth (two months free).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AddOn, SubscriptionPlan
from app.plans import repository
from app.plans.schemas import AddOnCreate, PlanCreate

DEFAULT_PLANS = (
    PlanCreate(
        slug="starter",
        name="Starter",
        description="For small teams getting started with outbound and inbound calling.",
        monthly_price=4_900,
        yearly_price=49_000,
        included_minutes=1_000,
        max_agents=5,
        overage_rate_per_minute=Decimal("2.5"),
        overage_rate_per_agent=Decimal("1500"),
        features={
            "call_recording": True,
            "ivr": False,
            "crm_integration": False,
            "advanced_analytics": False,
            "api_access": False,
            "white_label": False,
            "priority_support": False,
        },
        sort_order=10,
    ),
    PlanCreate(
        slug="professional",
        name="Professional",
        description="For growing call centers that need integrations and analytics.",
        monthly_price=14_900,
        yearly_price=149_000,
        included_minutes=5_000,
        max_agents=25,
        overage_rate_per_minute=Decimal("2"),
        overage_rate_per_agent=Decimal("1200"),
        features={
            "call_recording": True,
            "ivr": True,
            "crm_integration": True,
            "advanced_analytics": True,
            "api_access": True,
            "white_label": False,
            "priority_support": False,
        },
        sort_order=20,
    ),
    PlanCreate(
        slug="enterprise",
        name="Enterprise",
        description="For large operations: white-label billing and priority support.",
        monthly_price=49_900,
        yearly_price=499_000,
        included_minutes=20_000,
        max_agents=100,
        overage_rate_per_minute=Decimal("1.5"),
        overage_rate_per_agent=Decimal("1000"),
        features={
            "call_recording": True,
            "ivr": True,
            "crm_integration": True,
            "advanced_analytics": True,
            "api_access": True,
            "white_label": True,
            "priority_support": True,
        },
        trial_days=30,
        sort_order=30,
    ),
)

DEFAULT_ADD_ONS = (
    AddOnCreate(
        slug="extra-minutes-1000",
        name="1,000 extra minutes",
        description="Adds 1,000 call minutes to each monthly allowance.",
        monthly_price=2_000,
        yearly_price=20_000,
        extra_minutes=1_000,
        max_quantity=50,
    ),
    AddOnCreate(
        slug="extra-agents-5",
        name="5 extra agents",
        description="Adds five agent seats.",
        monthly_price=5_000,
        yearly_price=50_000,
        extra_agents=5,
        max_quantity=20,
    ),
    AddOnCreate(
        slug="call-recording-archive",
        name="Call recording archive",
        description="Keeps call recordings for seven years.",
        monthly_price=3_000,
        yearly_price=30_000,
        features={"recording_archive": True},
    ),
)


@dataclass(frozen=True, slots=True)
class CatalogEntryOutcome:
    kind: Literal["plan", "add-on"]
    slug: str
    outcome: Literal["created", "unchanged", "differs"]
    differences: tuple[str, ...] = ()


def _existing_entry_outcome(
    kind: Literal["plan", "add-on"],
    row: SubscriptionPlan | AddOn,
    default: PlanCreate | AddOnCreate,
) -> CatalogEntryOutcome:
    differences = tuple(
        name
        for name, value in default.model_dump(exclude={"currency"}).items()
        if getattr(row, name) != value
    )
    if differences:
        return CatalogEntryOutcome(kind, row.slug, "differs", differences)
    return CatalogEntryOutcome(kind, row.slug, "unchanged")


async def install_default_catalog(
    session: AsyncSession, *, billing_currency: str
) -> list[CatalogEntryOutcome]:
    """Create the default plans and add-ons that do not exist yet, found by slug.

    Existing entries are never overwritten: an operator may have changed a price on purpose.
    Where one differs from the default, the outcome says which fields, and nothing changes.
    """
    outcomes: list[CatalogEntryOutcome] = []
    for plan_create in DEFAULT_PLANS:
        values = {**plan_create.model_dump(exclude={"currency"}), "currency": billing_currency}
        if await repository.insert_if_missing(session, SubscriptionPlan, values):
            outcomes.append(CatalogEntryOutcome("plan", plan_create.slug, "created"))
            continue
        plan = await repository.get_plan_by_slug(session, plan_create.slug)
        if plan is not None:
            outcomes.append(_existing_entry_outcome("plan", plan, plan_create))
    for add_on_create in DEFAULT_ADD_ONS:
        values = {**add_on_create.model_dump(exclude={"currency"}), "currency": billing_currency}
        if await repository.insert_if_missing(session, AddOn, values):
            outcomes.append(CatalogEntryOutcome("add-on", add_on_create.slug, "created"))
            continue
        add_on = await repository.get_add_on_by_slug(session, add_on_create.slug)
        if add_on is not None:
            outcomes.append(_existing_entry_outcome("add-on", add_on, add_on_create))
    return outcomes
