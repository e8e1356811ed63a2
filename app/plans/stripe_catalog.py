"""`billing create-stripe-products`: the catalog on Stripe, found again on every run.

Each plan and add-on is one Stripe product with a fixed id (`billing_plan_<slug>`,
`billing_addon_<slug>`) and a monthly and a yearly price found by `lookup_key`
(`plan_<slug>_monthly_<currency>`), so a second run finds everything and creates nothing.
Stripe prices are immutable: a changed amount becomes a new price that takes over the lookup
key (`transfer_lookup_key`) while the old one is archived; subscriptions on the old price keep
it. Without `force_update` a difference is only reported.
"""

import uuid
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import AddOn, SubscriptionPlan
from app.plans import repository
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import PriceState

CYCLES: tuple[tuple[Literal["monthly", "yearly"], str], ...] = (
    ("monthly", "month"),
    ("yearly", "year"),
)


@dataclass
class CatalogSyncReport:
    entry: str
    actions: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


def _names(row: SubscriptionPlan | AddOn) -> tuple[str, str]:
    kind = "plan" if isinstance(row, SubscriptionPlan) else "addon"
    return f"billing_{kind}_{row.slug}", f"{kind}_{row.slug}"


def lookup_key(row: SubscriptionPlan | AddOn, cycle: str) -> str:
    return f"{_names(row)[1]}_{cycle}_{row.currency}"


async def _sync_product(
    gateway: StripeGateway,
    row: SubscriptionPlan | AddOn,
    report: CatalogSyncReport,
    force_update: bool,
    dry_run: bool,
) -> str:
    product_id, _ = _names(row)
    product = await gateway.retrieve_product(product_id)
    if product is None and dry_run:
        report.differences.append("product missing")
        return product_id
    if product is None:
        await gateway.create_product(
            product_id=product_id,
            name=row.name,
            description=row.description,
            metadata={"catalog_kind": _names(row)[1].split("_")[0], "slug": row.slug},
            idempotency_key=f"product:{product_id}",
        )
        report.actions.append("product created")
        if not row.is_active:
            await gateway.update_product(
                product_id=product_id,
                name=row.name,
                description=row.description,
                active=False,
                idempotency_key=f"product:{product_id}:inactive",
            )
        return product_id
    if (product.name, product.active) != (row.name, row.is_active):
        if force_update and not dry_run:
            await gateway.update_product(
                product_id=product_id,
                name=row.name,
                description=row.description,
                active=row.is_active,
                idempotency_key=f"product:{product_id}:{uuid.uuid4().hex}",
            )
            report.actions.append("product updated")
        else:
            report.differences.append("product name or active flag")
    return product_id


async def _sync_price(
    gateway: StripeGateway,
    row: SubscriptionPlan | AddOn,
    *,
    product_id: str,
    cycle: str,
    interval: str,
    existing: PriceState | None,
    report: CatalogSyncReport,
    force_update: bool,
    dry_run: bool,
) -> str | None:
    amount = row.monthly_price if cycle == "monthly" else row.yearly_price
    key = lookup_key(row, cycle)
    if existing is not None and not existing.active:
        # An archived price keeps its lookup key only by accident: treat it as missing.
        existing = None
    if (
        existing is not None
        and existing.unit_amount == amount
        and existing.interval == interval
        and existing.tax_behavior == "exclusive"
    ):
        return existing.id
    if existing is None and dry_run:
        report.differences.append(f"{cycle} price missing")
        return None
    if existing is not None and (dry_run or not force_update):
        report.differences.append(
            f"{cycle} price is {existing.unit_amount} on Stripe, {amount} here"
            if existing.unit_amount != amount
            else f"{cycle} price is not tax-exclusive or not per {interval}"
        )
        return existing.id
    price = await gateway.create_price(
        product_id=product_id,
        unit_amount=amount,
        currency=row.currency,
        interval=interval,
        lookup_key=key,
        metadata={"slug": row.slug, "cycle": cycle},
        # The price it replaces is part of the key: A, then B, then A again within a day are
        # three prices, not a replay of the first (which is archived by then).
        idempotency_key=f"price:{key}:{amount}:{existing.id if existing else 'first'}",
    )
    if existing is None:
        report.actions.append(f"{cycle} price created ({price.id})")
    else:
        await gateway.archive_price(price_id=existing.id, idempotency_key=f"archive:{existing.id}")
        report.actions.append(f"{cycle} price replaced ({existing.id} archived, {price.id} new)")
    return price.id


async def sync_catalog_to_stripe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    force_update: bool,
    dry_run: bool = False,
) -> list[CatalogSyncReport]:
    """Create what is missing on Stripe (and, with `force_update`, replace what differs);
    `dry_run` only reports, for `billing check-stripe`."""
    async with sessionmaker() as session:
        rows: list[SubscriptionPlan | AddOn] = [
            *await repository.list_plans(session, active_only=False),
            *await repository.list_add_ons(session, active_only=False),
        ]
    prices = await gateway.prices_by_lookup_key(
        [lookup_key(row, cycle) for row in rows for cycle, _ in CYCLES]
    )
    reports = []
    for row in rows:
        report = CatalogSyncReport(entry=f"{_names(row)[1].split('_')[0]} {row.slug}")
        product_id = await _sync_product(gateway, row, report, force_update, dry_run)
        price_ids = {
            cycle: await _sync_price(
                gateway,
                row,
                product_id=product_id,
                cycle=cycle,
                interval=interval,
                existing=prices.get(lookup_key(row, cycle)),
                report=report,
                force_update=force_update,
                dry_run=dry_run,
            )
            for cycle, interval in CYCLES
        }
        reports.append(report)
        if dry_run:
            continue
        async with sessionmaker.begin() as session:
            stored: SubscriptionPlan | AddOn | None = (
                await repository.get_plan(session, row.id, for_update=True)
                if isinstance(row, SubscriptionPlan)
                else await repository.get_add_on(session, row.id, for_update=True)
            )
            assert stored is not None
            stored.stripe_product_id = product_id
            stored.stripe_monthly_price_id = price_ids["monthly"]
            stored.stripe_yearly_price_id = price_ids["yearly"]
    return reports
