from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.auth import CurrentPrincipal
from app.customers import service
from app.models import Customer


async def get_current_customer(request: Request, principal: CurrentPrincipal) -> Customer:
    # Its own short transaction: the account exists from the first authenticated call, even
    # when that call itself fails and rolls back its own writes.
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        customer = await service.ensure_customer(session, principal=principal)
    structlog.contextvars.bind_contextvars(customer_id=customer.id)
    return customer


CurrentCustomer = Annotated[Customer, Depends(get_current_customer)]
