"""Moving settled billing-history rows to the archive table."""

import asyncio
import re
import time
from datetime import datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import archive as billing_archive
from app.cli.common import fail, with_database
from app.core.clock import SystemClock
from app.core.config import get_settings

archive_app = typer.Typer()


def _age_in_days(value: str) -> int:
    """`730d` → 730: the age for --older-than, in whole days."""
    match = re.fullmatch(r"(-?\d+)d", value.strip().lower())
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not an age; write a number of days such as 730d",
            param_hint="--older-than",
        )
    days = int(match.group(1))
    if days < 1:
        raise typer.BadParameter(
            f"{value!r}: the age must be a positive number of days, such as 730d",
            param_hint="--older-than",
        )
    return days


@archive_app.command("archive-billing-records")
def archive_billing_records(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Archive settled rows older than this many days, written like 730d.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would move; move nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Rows per transaction.")
    ] = billing_archive.DEFAULT_BATCH_SIZE,
) -> None:
    """Move settled billing-history rows older than --older-than to the archive table, a
    transaction per batch. Archived rows keep their ids, stay listed with
    include_archived=true and keep their PDFs. Safe to stop and run again: it carries on.
    Prints the counts before and after; exit code 1 when the totals differ."""
    days = _age_in_days(older_than)
    clock = SystemClock()
    try:
        billing_archive.archive_cutoff(clock.now(), older_than_days=days)
    except OverflowError:
        raise typer.BadParameter(
            f"{older_than!r} reaches back before the year 1", param_hint="--older-than"
        ) from None

    def counted(cutoff: datetime, before: billing_archive.BillingRecordCounts) -> None:
        typer.echo(f"cutoff: {cutoff.isoformat()} (settled rows older than {days} days)")
        typer.echo(
            f"before: hot {before.hot}, archived {before.archived}, total {before.total} "
            f"(ids up to {before.up_to_id}); eligible {before.eligible}"
        )

    def batch_done(batch: billing_archive.ArchivedBatch) -> None:
        typer.echo(f"batch {batch.number}: {batch.moved} moved ({batch.moved_so_far} so far)")

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> billing_archive.ArchiveRun:
        return await billing_archive.archive_billing_records(
            sessionmaker,
            clock=clock,
            older_than_days=days,
            batch_size=batch_size,
            dry_run=dry_run,
            on_counted=counted,
            on_batch=batch_done,
        )

    started = time.monotonic()
    try:
        run = asyncio.run(with_database(get_settings(), work))
    except KeyboardInterrupt:
        fail(
            "interrupted: the batches committed so far stay archived, the one in flight was "
            "rolled back; run the command again to carry on",
            exit_code=130,
        )
    if run.after is None:
        typer.echo(
            f"dry run: {run.before.eligible} rows would move, in batches of {batch_size}; "
            "nothing moved"
        )
        return
    after = run.after
    typer.echo(
        f"after: hot {after.hot}, archived {after.archived}, total {after.total}; "
        f"eligible left {after.eligible}"
    )
    typer.echo(
        f"moved {run.moved} rows in {run.batches} batches ({time.monotonic() - started:.1f} s)"
    )
    if after.eligible:
        typer.echo(
            f"{after.eligible} eligible rows were busy or changed during the run; "
            "the next run takes them"
        )
    if not run.totals_match:
        fail(
            f"totals differ: {run.before.total} before, {after.total} after; find what "
            "added or deleted billing rows among the counted ids before running again",
            exit_code=1,
        )
