"""Archiving billing history: settled rows past an age move to `billing_history_archive`.

The rule: a row is archived when it `occurred_at` before the cutoff (now minus the age, taken
once when a run starts) and its status is settled: the invoice is paid, void or
uncollectible, or the refund went through, failed or was canceled. Draft, open and pending
rows stay, whatever their age: Stripe is still changing them. Should Stripe update an
archived row after all (a replayed event, an uncollectible invoice paid at last), the update
is applied to the archived row; it never reappears in the hot table (see
`service._keep_archived_row`).

Rows move in batches, one statement and one transaction per batch, lowest ids first. A run
that stops (Ctrl-C, a crash, a lost connection) leaves every row in exactly one table: the
batches before committed, the one in flight rolled back. A rerun applies the same rule and
carries on with what is left.

The counts before and after cover the ids that existed when the run started, so rows
written meanwhile (new invoices) do not disturb the check that hot + archived is unchanged.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import repository
from app.core.clock import Clock

# Invoice statuses Stripe no longer moves on its own, and the refund statuses we store for a
# refund that is through (`refunded`), failed or canceled.
SETTLED_STATUSES = ("paid", "void", "uncollectible", "refunded", "failed", "canceled")
DEFAULT_BATCH_SIZE = 1_000


def archive_cutoff(now: datetime, *, older_than_days: int) -> datetime:
    """Rows that occurred before this are old enough to archive."""
    if older_than_days < 1:
        raise ValueError("the archive age is at least one day")
    return now - timedelta(days=older_than_days)


@dataclass(frozen=True, slots=True)
class BillingRecordCounts:
    hot: int
    archived: int
    # Hot rows the rule takes (archivable now).
    eligible: int
    # The counts cover ids up to this one.
    up_to_id: int

    @property
    def total(self) -> int:
        return self.hot + self.archived


@dataclass(frozen=True, slots=True)
class ArchivedBatch:
    number: int
    moved: int
    moved_so_far: int


@dataclass(frozen=True, slots=True)
class ArchiveRun:
    cutoff: datetime
    before: BillingRecordCounts
    # None for a dry run.
    after: BillingRecordCounts | None
    batches: int
    moved: int

    @property
    def totals_match(self) -> bool:
        return self.after is None or self.after.total == self.before.total


async def count_billing_records(
    session: AsyncSession, *, cutoff: datetime, up_to_id: int | None = None
) -> BillingRecordCounts:
    """Rows in each table with ids up to `up_to_id` (default: the newest now)."""
    if up_to_id is None:
        up_to_id = await repository.newest_id(session)
    hot, archived, eligible = await repository.count_rows(
        session, up_to_id=up_to_id, occurred_before=cutoff, statuses=SETTLED_STATUSES
    )
    return BillingRecordCounts(hot=hot, archived=archived, eligible=eligible, up_to_id=up_to_id)


async def archive_one_batch(
    session: AsyncSession,
    *,
    cutoff: datetime,
    batch_size: int,
    archived_at: datetime,
    after_id: int = 0,
) -> list[int]:
    """Move up to `batch_size` archivable rows with ids above `after_id`; returns their ids.
    The caller commits (one batch, one transaction)."""
    return await repository.move_to_archive(
        session,
        occurred_before=cutoff,
        statuses=SETTLED_STATUSES,
        after_id=after_id,
        limit=batch_size,
        archived_at=archived_at,
    )


async def move_archivable_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    clock: Clock,
    cutoff: datetime,
    batch_size: int,
    on_batch: Callable[[ArchivedBatch], None] | None = None,
) -> tuple[int, int]:
    """Archive every row the rule takes, a committed transaction per batch; returns
    (batches, rows moved). `on_batch` hears of each batch after its commit."""
    batches = moved = 0
    # Keyset over ids: each batch's scan starts where the last one ended, instead of
    # reading again past the rows already moved.
    after_id = 0
    while True:
        async with sessionmaker.begin() as session:
            ids = await archive_one_batch(
                session,
                cutoff=cutoff,
                batch_size=batch_size,
                archived_at=clock.now(),
                after_id=after_id,
            )
        if not ids:
            break
        batches += 1
        moved += len(ids)
        after_id = max(ids)
        if on_batch is not None:
            on_batch(ArchivedBatch(number=batches, moved=len(ids), moved_so_far=moved))
        if len(ids) < batch_size:
            # The scan reached the end of the table; rows it skipped because a writer held
            # them are left for the next run.
            break
    return batches, moved


async def archive_billing_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    clock: Clock,
    older_than_days: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_counted: Callable[[datetime, BillingRecordCounts], None] | None = None,
    on_batch: Callable[[ArchivedBatch], None] | None = None,
) -> ArchiveRun:
    """Count, move in batches, count again: one archive run (the CLI's and the cron job's).

    `on_counted` hears the cutoff and the counts before anything moves. A dry run counts
    and moves nothing.
    """
    if batch_size < 1:
        raise ValueError("the batch size is at least one row")
    cutoff = archive_cutoff(clock.now(), older_than_days=older_than_days)
    async with sessionmaker() as session:
        before = await count_billing_records(session, cutoff=cutoff)
    if on_counted is not None:
        on_counted(cutoff, before)
    if dry_run:
        return ArchiveRun(cutoff=cutoff, before=before, after=None, batches=0, moved=0)
    batches, moved = await move_archivable_records(
        sessionmaker, clock=clock, cutoff=cutoff, batch_size=batch_size, on_batch=on_batch
    )
    async with sessionmaker() as session:
        after = await count_billing_records(session, cutoff=cutoff, up_to_id=before.up_to_id)
    return ArchiveRun(cutoff=cutoff, before=before, after=after, batches=batches, moved=moved)
