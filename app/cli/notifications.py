"""`billing notifications`: the outbox as `admin/notifications/` lists it, and a resend."""

import asyncio

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import format_when, print_table, with_database
from app.core.clock import SystemClock
from app.core.config import get_settings
from app.core.errors import AppError
from app.notifications import service
from app.notifications.service import NotificationWithDeliveries

notifications_app = typer.Typer()

_COLUMNS = ("id", "customer", "kind", "status", "created", "email", "dashboard", "last error")


def _row(item: NotificationWithDeliveries) -> tuple[str, ...]:
    notification = item.notification
    by_channel = {delivery.channel: delivery for delivery in item.deliveries}

    def channel(name: str) -> str:
        delivery = by_channel.get(name)
        return f"{delivery.status}({delivery.attempts})" if delivery else "-"

    errors = [d.last_error for d in item.deliveries if d.last_error and d.status != "sent"]
    return (
        str(notification.id),
        str(notification.customer_id),
        notification.kind,
        notification.status,
        format_when(notification.created_at),
        channel("email"),
        channel("dashboard"),
        (errors[0][:60] if errors else "-"),
    )


@notifications_app.command("notifications")
def list_notifications(
    dead: bool = typer.Option(False, "--dead", help="Only the dead ones (gave up)."),
    status: str | None = typer.Option(None, help="pending, sent or dead."),
    kind: str | None = typer.Option(None, "--type", help="payment_failed, welcome, ..."),
    customer: int | None = typer.Option(None, help="A customer's id."),
    limit: int = typer.Option(50, min=1, max=500),
    resend: int | None = typer.Option(
        None, help="Resend this dead notification (its dead channels) instead of listing."
    ),
) -> None:
    """Print notifications with each channel's state (`email`, `dashboard`), newest first;
    `--resend ID` delivers a dead one again."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> list[NotificationWithDeliveries]:
        if resend is not None:
            async with sessionmaker.begin() as session:
                return [
                    await service.resend_notification(
                        session, notification_id=resend, now=SystemClock().now()
                    )
                ]
        async with sessionmaker() as session:
            return await service.list_notifications(
                session,
                status="dead" if dead else status,
                kind=kind,
                customer_id=customer,
                limit=limit,
            )

    try:
        items = asyncio.run(with_database(get_settings(), work))
    except AppError as error:
        typer.echo(f"{error.code}: {error.detail_message}", err=True)
        raise typer.Exit(1) from None
    if not items:
        typer.echo("No notification matches.")
        return
    print_table(_COLUMNS, [_row(item) for item in items])
