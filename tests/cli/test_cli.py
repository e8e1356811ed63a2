from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from app.cli import app as cli
from app.core.auth import decode_access_token
from app.core.config import Settings
from app.models import AddOn, SubscriptionPlan
from tests.cli.conftest import invoke


async def test_setup_packages_creates_the_default_catalog_once(
    environment: Settings, session: AsyncSession
) -> None:
    first = await invoke("setup-packages")
    assert first.exit_code == 0, first.output
    plans = (await session.scalars(select(SubscriptionPlan).order_by("sort_order"))).all()
    assert [plan.name for plan in plans] == ["Starter", "Professional", "Enterprise"]
    for plan in plans:
        assert plan.monthly_price > 0 and plan.yearly_price > 0
        assert plan.included_minutes > 0 and plan.max_agents > 0
        assert plan.overage_rate_per_minute > 0 and plan.overage_rate_per_agent > 0
        assert plan.features and plan.currency == "usd"
    assert len((await session.scalars(select(AddOn))).all()) == 3

    second = await invoke("setup-packages")
    assert second.exit_code == 0, second.output
    assert "created" not in second.output
    assert "nothing to do" in second.output
    session.expire_all()
    assert len((await session.scalars(select(SubscriptionPlan))).all()) == 3


async def test_setup_packages_never_overwrites_an_operators_change(
    environment: Settings, session: AsyncSession
) -> None:
    await invoke("setup-packages")
    starter = await session.scalar(
        select(SubscriptionPlan).where(SubscriptionPlan.slug == "starter")
    )
    assert starter is not None
    starter.monthly_price = 5_900
    await session.commit()

    result = await invoke("setup-packages")

    assert "plan starter: differs from the default (monthly_price); left as it is" in result.output
    await session.refresh(starter)
    assert starter.monthly_price == 5_900


def test_issue_token_prints_a_token_the_service_accepts(environment: Settings) -> None:
    result = CliRunner().invoke(cli, ["issue-token", "--user-id", "42", "--role", "billing_admin"])

    assert result.exit_code == 0, result.output
    principal = decode_access_token(result.output.strip(), environment, datetime.now(UTC))
    assert principal.user_id == "42"
    assert principal.is_billing_admin
