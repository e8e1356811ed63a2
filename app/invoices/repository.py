from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CustomerBranding, InvoiceDocument


async def get_document(
    session: AsyncSession, *, stripe_invoice_id: str, customer_id: int
) -> InvoiceDocument | None:
    return await session.scalar(
        select(InvoiceDocument).where(
            InvoiceDocument.stripe_invoice_id == stripe_invoice_id,
            InvoiceDocument.customer_id == customer_id,
        )
    )


async def insert_document_if_absent(session: AsyncSession, values: dict[str, Any]) -> None:
    # ON CONFLICT DO NOTHING: of two first downloads rendering at once, the first to commit
    # stores its PDF; the other's is dropped and both serve the stored one.
    await session.execute(
        insert(InvoiceDocument)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[InvoiceDocument.stripe_invoice_id])
    )


async def get_branding(session: AsyncSession, *, customer_id: int) -> CustomerBranding | None:
    return await session.get(CustomerBranding, customer_id)


async def upsert_branding(session: AsyncSession, values: dict[str, Any]) -> CustomerBranding:
    """Insert or replace the customer's branding (one statement: concurrent PUTs of one
    customer meet at the primary key, the last one wins)."""
    statement = insert(CustomerBranding).values(**values)
    updates: dict[str, Any] = {
        name: statement.excluded[name] for name in values if name != "customer_id"
    }
    # ON CONFLICT DO UPDATE does not apply the column's Python-side `onupdate`.
    updates["updated_at"] = func.now()
    rows = await session.scalars(
        statement.on_conflict_do_update(index_elements=["customer_id"], set_=updates).returning(
            CustomerBranding
        ),
        execution_options={"populate_existing": True},
    )
    return rows.one()


async def delete_branding(session: AsyncSession, *, customer_id: int) -> None:
    await session.execute(
        delete(CustomerBranding).where(CustomerBranding.customer_id == customer_id)
    )
