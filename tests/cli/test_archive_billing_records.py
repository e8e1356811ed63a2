from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import Result

from app.billing_history import archive
from app.core.config import Settings
from app.models import BillingHistory, BillingHistoryArchive
from tests.cli.conftest import invoke
from tests.factories import create_customer


def _said(result: Result) -> str:
    # The error panel wraps long lines in a box: compare the words.
    return " ".join(result.output.replace("│", " ").split())


async def _add_rows(session: AsyncSession, *, old: int, recent: int) -> None:
    customer = await create_customer(session)
    # The command runs on the system clock: ages are relative to now.
    now = datetime.now(UTC)
    await session.execute(
        text(
            "INSERT INTO billing_history (customer_id, type, status, amount, currency,"
            " stripe_invoice_id, occurred_at)"
            " SELECT :customer_id, 'subscription', 'paid', 9900, 'usd', 'in_' || n,"
            " CASE WHEN n <= :old THEN CAST(:old_at AS timestamptz)"
            " ELSE CAST(:recent_at AS timestamptz) END"
            " FROM generate_series(1, :count) AS n"
        ),
        {
            "customer_id": customer.id,
            "old": old,
            "count": old + recent,
            "old_at": now - timedelta(days=800),
            "recent_at": now - timedelta(days=10),
        },
    )
    await session.commit()


async def _counts(session: AsyncSession) -> tuple[int | None, int | None]:
    return (
        await session.scalar(select(func.count()).select_from(BillingHistory)),
        await session.scalar(select(func.count()).select_from(BillingHistoryArchive)),
    )


async def test_archive_prints_matching_counts_before_and_after(
    environment: Settings, session: AsyncSession
) -> None:
    await _add_rows(session, old=7, recent=3)

    result = await invoke("archive-billing-records", "--older-than", "730d", "--batch-size", "3")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("cutoff: ") and "older than 730 days" in lines[0]
    assert lines[1] == "before: hot 10, archived 0, total 10 (ids up to 10); eligible 7"
    assert lines[2:5] == [
        "batch 1: 3 moved (3 so far)",
        "batch 2: 3 moved (6 so far)",
        "batch 3: 1 moved (7 so far)",
    ]
    assert lines[5] == "after: hot 3, archived 7, total 10; eligible left 0"
    assert lines[6].startswith("moved 7 rows in 3 batches")
    assert await _counts(session) == (3, 7)

    again = await invoke("archive-billing-records", "--older-than", "730d")

    assert again.exit_code == 0, again.output
    assert "before: hot 3, archived 7, total 10 (ids up to 10); eligible 0" in again.output
    assert "moved 0 rows in 0 batches" in again.output


async def test_a_dry_run_says_what_would_move_and_moves_nothing(
    environment: Settings, session: AsyncSession
) -> None:
    await _add_rows(session, old=4, recent=2)

    result = await invoke("archive-billing-records", "--older-than", "730d", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "before: hot 6, archived 0, total 6 (ids up to 6); eligible 4" in result.output
    assert "dry run: 4 rows would move, in batches of 1000; nothing moved" in result.output
    assert await _counts(session) == (6, 0)


@pytest.mark.parametrize(
    ("older_than", "message"),
    [
        ("-30d", "'-30d': the age must be a positive number of days, such as 730d"),
        ("0d", "'0d': the age must be a positive number of days, such as 730d"),
        ("730", "'730' is not an age; write a number of days such as 730d"),
        ("two years", "'two years' is not an age; write a number of days such as 730d"),
        ("7.5d", "'7.5d' is not an age; write a number of days such as 730d"),
        ("", "'' is not an age; write a number of days such as 730d"),
        ("99999999999d", "'99999999999d' reaches back before the year 1"),
    ],
)
async def test_a_negative_or_unparsable_age_exits_non_zero_with_a_clear_message(
    environment: Settings, session: AsyncSession, older_than: str, message: str
) -> None:
    await _add_rows(session, old=2, recent=0)

    result = await invoke("archive-billing-records", "--older-than", older_than)

    assert result.exit_code == 2
    assert f"Invalid value for --older-than: {message}" in _said(result)
    assert await _counts(session) == (2, 0)


async def test_a_batch_size_below_one_or_a_missing_age_exits_non_zero(
    environment: Settings,
) -> None:
    no_rows = await invoke("archive-billing-records", "--older-than", "730d", "--batch-size", "0")
    no_age = await invoke("archive-billing-records")

    assert no_rows.exit_code == 2 and "--batch-size" in _said(no_rows)
    assert no_age.exit_code == 2 and "Missing option '--older-than'" in _said(no_age)


async def test_totals_that_differ_exit_non_zero(
    environment: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cutoff = datetime(2024, 11, 25, tzinfo=UTC)

    async def lost_a_row(*_: Any, **__: Any) -> archive.ArchiveRun:
        return archive.ArchiveRun(
            cutoff=cutoff,
            before=archive.BillingRecordCounts(hot=10, archived=0, eligible=7, up_to_id=10),
            after=archive.BillingRecordCounts(hot=3, archived=6, eligible=0, up_to_id=10),
            batches=1,
            moved=7,
        )

    monkeypatch.setattr(archive, "archive_billing_records", lost_a_row)

    result = await invoke("archive-billing-records", "--older-than", "730d")

    assert result.exit_code == 1
    assert "after: hot 3, archived 6, total 9; eligible left 0" in result.output
    assert "totals differ: 10 before, 9 after" in result.output
