from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from app.cli import app as cli
from app.core.auth import decode_access_token
from app.core.config import Settings, get_settings
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


def test_issue_token_caps_the_lifetime(environment: Settings) -> None:
    result = CliRunner().invoke(cli, ["issue-token", "--user-id", "42", "--expires-in", "86401"])

    assert result.exit_code == 2
    assert "86400" in result.output


def test_issue_token_refuses_a_user_id_the_service_would_refuse(environment: Settings) -> None:
    result = CliRunner().invoke(cli, ["issue-token", "--user-id", "alice"])

    assert result.exit_code == 2
    assert "not a dashboard user id" in result.output


def test_issue_token_grants_roles_in_production_only_when_asked_explicitly(
    environment: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "a-real-production-secret-of-more-than-32-chars")
    get_settings.cache_clear()
    arguments = ["issue-token", "--user-id", "42", "--role", "billing_admin"]

    refused = CliRunner().invoke(cli, arguments)
    granted = CliRunner().invoke(cli, [*arguments, "--allow-roles-in-production"])
    plain_user = CliRunner().invoke(cli, ["issue-token", "--user-id", "42"])

    assert refused.exit_code == 2
    assert "--allow-roles-in-production" in refused.output
    assert granted.exit_code == 0, granted.output
    assert plain_user.exit_code == 0, plain_user.output


def test_a_database_url_that_is_not_postgresql_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://billing@localhost/billing")

    result = CliRunner().invoke(cli, ["dunning"])

    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "configuration error: DATABASE_URL must be a PostgreSQL URL (postgresql://...)"
    ]
