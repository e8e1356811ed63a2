from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import OperatorAlert
from app.operator_alerts import service


async def test_the_same_fact_raises_one_alert_however_often_it_is_reported(
    session: AsyncSession, clock: FrozenClock
) -> None:
    raised = [
        await service.raise_alert(
            session,
            kind="charge_dispute",
            message="Charge ch_1 disputed: fraudulent",
            details={"charge": "ch_1"},
            dedupe_key="dispute:dp_1",
            now=clock.now(),
        )
        for _ in range(3)
    ]
    await session.commit()

    alerts = (await session.scalars(select(OperatorAlert))).all()
    assert raised == [True, False, False]
    assert [(alert.kind, alert.severity, alert.details) for alert in alerts] == [
        ("charge_dispute", "high", {"charge": "ch_1"})
    ]
