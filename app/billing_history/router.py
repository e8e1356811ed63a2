from typing import Annotated

from fastapi import Query

from app.billing_history import service
from app.billing_history.errors import InvalidCursor
from app.billing_history.schemas import (
    BillingHistoryListResponse,
    BillingHistoryPublic,
    BillingHistoryType,
)
from app.core.db import SessionDep
from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.customers.dependencies import CurrentCustomer

router = SlashTolerantRouter(tags=["billing history"])


@router.get(
    "/billing-history/",
    response_model=BillingHistoryListResponse,
    responses=error_responses(Unauthorized, InvalidCursor),
    summary="The caller's invoices and refunds, newest first",
)
async def list_billing_history(
    customer: CurrentCustomer,
    session: SessionDep,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    entry_type: Annotated[BillingHistoryType | None, Query(alias="type")] = None,
    status: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            pattern=r"^[a-z_]+$",
            description="Stripe's status of the invoice or refund: `paid`, `open`, `refunded`...",
        ),
    ] = None,
    include_archived: Annotated[
        bool,
        Query(description="Also list archived (settled, old) rows, in the same order."),
    ] = False,
) -> BillingHistoryListResponse:
    page = await service.list_billing_history(
        session,
        customer_id=customer.id,
        cursor=cursor,
        limit=limit,
        entry_type=entry_type,
        status=status,
        include_archived=include_archived,
    )
    return BillingHistoryListResponse(
        billing_history=[BillingHistoryPublic.model_validate(row) for row in page.rows],
        next_cursor=page.next_cursor,
    )
