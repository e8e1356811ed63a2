from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import Notification
from app.notifications import service
from tests.factories import create_customer


async def test_a_notice_is_written_once_per_fact_and_waits_for_delivery(
    session: AsyncSession, clock: FrozenClock
) -> None:
    customer = await create_customer(session)
    written = [
        await service.notify(
            session,
            customer_id=customer.id,
            kind="trial_will_end",
            dedupe_key=f"trial_will_end:{customer.id}:1767225600",
            payload={"trial_end": "2026-01-01T00:00:00+00:00"},
            now=clock.now(),
        )
        for _ in range(2)
    ]
    await session.commit()

    notices = (await session.scalars(select(Notification))).all()
    assert written == [True, False]
    assert [(notice.kind, notice.status, notice.customer_id) for notice in notices] == [
        ("trial_will_end", "pending", customer.id)
    ]
