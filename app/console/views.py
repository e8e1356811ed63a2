"""The console's pages of the tables: read-only lists and details, and each table's actions
(the catalog's are in `catalog_views`)."""

from datetime import datetime
from typing import Any

from sqladmin import action, expose
from sqladmin.filters import AllUniqueStringValuesFilter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from app.console.actions import ConsoleModelView
from app.console.context import console_context
from app.core.errors import InvalidRequest
from app.models import (
    BillingHistory,
    ConsoleAuditEntry,
    Customer,
    Notification,
    OperatorAlert,
    OverageCharge,
    StripeEvent,
    Subscription,
    UsagePeriodTotals,
)
from app.notifications import service as notifications_service
from app.operator_alerts import service as operator_alerts_service
from app.webhooks.admin_service import mark_for_replay_by_row
from app.webhooks.processing import process_event


class CustomerView(ConsoleModelView, model=Customer):
    icon = "fa-solid fa-user"
    column_list = [
        Customer.id,
        Customer.dashboard_user_id,
        Customer.email,
        Customer.name,
        Customer.stripe_customer_id,
        Customer.suspended_at,
    ]
    column_searchable_list = [Customer.email, Customer.dashboard_user_id, Customer.name]
    column_default_sort = (Customer.id, True)


class SubscriptionView(ConsoleModelView, model=Subscription):
    icon = "fa-solid fa-repeat"
    column_list = [
        Subscription.id,
        Subscription.customer_id,
        Subscription.plan_id,
        Subscription.billing_cycle,
        Subscription.status,
        Subscription.current_period_end,
        Subscription.cancel_at_period_end,
        # Dunning: where a failed payment stands.
        Subscription.failed_payment_attempts,
        Subscription.next_payment_retry_at,
        Subscription.grace_period_ends_at,
        Subscription.payment_overdue_at,
        Subscription.last_decline_code,
    ]
    column_filters = [AllUniqueStringValuesFilter(Subscription.status)]
    column_searchable_list = [Subscription.stripe_subscription_id]
    column_default_sort = (Subscription.id, True)


class BillingHistoryView(ConsoleModelView, model=BillingHistory):
    name_plural = "Billing history"
    icon = "fa-solid fa-file-invoice-dollar"
    column_list = [
        BillingHistory.id,
        BillingHistory.customer_id,
        BillingHistory.type,
        BillingHistory.status,
        BillingHistory.amount,
        BillingHistory.amount_paid,
        BillingHistory.currency,
        BillingHistory.number,
        BillingHistory.occurred_at,
    ]
    column_filters = [
        AllUniqueStringValuesFilter(BillingHistory.type),
        AllUniqueStringValuesFilter(BillingHistory.status),
    ]
    column_searchable_list = [BillingHistory.stripe_invoice_id, BillingHistory.number]
    column_default_sort = (BillingHistory.occurred_at, True)


class UsagePeriodView(ConsoleModelView, model=UsagePeriodTotals):
    name = "Usage period"
    name_plural = "Usage periods"
    icon = "fa-solid fa-phone"
    column_list = [
        UsagePeriodTotals.id,
        UsagePeriodTotals.subscription_id,
        UsagePeriodTotals.period_start,
        UsagePeriodTotals.period_end,
        UsagePeriodTotals.minutes_used,
        UsagePeriodTotals.peak_agents,
        UsagePeriodTotals.record_count,
        UsagePeriodTotals.overage_billed_at,
    ]
    column_default_sort = (UsagePeriodTotals.period_start, True)


class OverageChargeView(ConsoleModelView, model=OverageCharge):
    icon = "fa-solid fa-coins"
    column_list = [
        OverageCharge.id,
        OverageCharge.subscription_id,
        OverageCharge.period_start,
        OverageCharge.period_end,
        OverageCharge.sequence,
        OverageCharge.minutes_over,
        OverageCharge.agents_over,
        OverageCharge.minutes_amount,
        OverageCharge.agents_amount,
    ]
    column_default_sort = (OverageCharge.id, True)


class StripeEventView(ConsoleModelView, model=StripeEvent):
    name = "Webhook event"
    name_plural = "Webhook events"
    icon = "fa-brands fa-stripe-s"
    column_list = [
        StripeEvent.stripe_event_id,
        StripeEvent.type,
        StripeEvent.status,
        StripeEvent.attempts,
        StripeEvent.last_error,
        StripeEvent.received_at,
        StripeEvent.processed_at,
    ]
    column_filters = [
        AllUniqueStringValuesFilter(StripeEvent.status),
        AllUniqueStringValuesFilter(StripeEvent.type),
    ]
    column_searchable_list = [StripeEvent.stripe_event_id, StripeEvent.object_id]
    column_default_sort = (StripeEvent.received_at, True)
    confirmations = {
        "replay": ("Process these Stripe events again, now?", "Replay"),
    }

    @action("replay", "Replay", add_in_list=True, add_in_detail=True)
    async def replay_confirm(self, request: Request) -> Response:
        return await self.confirm(request, "replay")

    @expose("/replay", methods=["POST"])
    async def replay(self, request: Request) -> Response:
        """What `billing replay-webhook` does: back to pending, then processed here and now
        (the worker would take it too; processing is safe to run twice at once)."""
        context = console_context(request)
        row_ids: dict[str, str] = {}  # console row id -> Stripe event id

        async def change(session: AsyncSession, row_id: str, now: datetime) -> dict[str, Any]:
            replayed = await mark_for_replay_by_row(
                session, clock=context.clock, row_id=_row_id(row_id)
            )
            row_ids[row_id] = replayed.stripe_event_id
            return {"stripe_event_id": replayed.stripe_event_id}

        async def done(row_id: str, details: dict[str, Any]) -> str:
            result = await process_event(
                sessionmaker=context.sessionmaker,
                gateway=context.gateway,
                clock=context.clock,
                stripe_event_id=row_ids[row_id],
                max_attempts=context.settings.WEBHOOK_MAX_ATTEMPTS,
                settings=context.settings,
            )
            return f"{row_ids[row_id]} replayed: {result.outcome} (attempt {result.attempts})"

        return await self.perform(request, action="webhook_event.replay", change=change, done=done)


class NotificationView(ConsoleModelView, model=Notification):
    """Dead letters are the `dead` ones (filter by status); resending one puts each of its
    dead channels back in the delivery queue, under the same event id."""

    icon = "fa-solid fa-envelope"
    column_list = [
        Notification.id,
        Notification.customer_id,
        Notification.kind,
        Notification.status,
        Notification.attempts,
        Notification.created_at,
        Notification.sent_at,
    ]
    column_filters = [
        AllUniqueStringValuesFilter(Notification.status),
        AllUniqueStringValuesFilter(Notification.kind),
    ]
    column_default_sort = (Notification.created_at, True)
    confirmations = {
        "resend": ("Send these notifications again?", "Resend"),
    }

    @action("resend", "Resend", add_in_list=True, add_in_detail=True)
    async def resend_confirm(self, request: Request) -> Response:
        return await self.confirm(request, "resend")

    @expose("/resend", methods=["POST"])
    async def resend(self, request: Request) -> Response:
        async def change(session: AsyncSession, row_id: str, now: datetime) -> dict[str, Any]:
            await notifications_service.resend_notification(
                session, notification_id=_row_id(row_id), now=now
            )
            return {}

        async def done(row_id: str, details: dict[str, Any]) -> str:
            return f"notification {row_id} queued to be sent again"

        return await self.perform(request, action="notification.resend", change=change, done=done)


class OperatorAlertView(ConsoleModelView, model=OperatorAlert):
    icon = "fa-solid fa-triangle-exclamation"
    column_list = [
        OperatorAlert.id,
        OperatorAlert.kind,
        OperatorAlert.severity,
        OperatorAlert.message,
        OperatorAlert.created_at,
        OperatorAlert.acknowledged_at,
    ]
    column_filters = [
        AllUniqueStringValuesFilter(OperatorAlert.kind),
        AllUniqueStringValuesFilter(OperatorAlert.severity),
    ]
    column_default_sort = (OperatorAlert.created_at, True)
    confirmations = {
        "acknowledge": ("Mark these alerts as seen?", "Acknowledge"),
    }

    @action("acknowledge", "Acknowledge", add_in_list=True, add_in_detail=True)
    async def acknowledge_confirm(self, request: Request) -> Response:
        return await self.confirm(request, "acknowledge")

    @expose("/acknowledge", methods=["POST"])
    async def acknowledge(self, request: Request) -> Response:
        async def change(session: AsyncSession, row_id: str, now: datetime) -> dict[str, Any]:
            newly = await operator_alerts_service.acknowledge_alert(
                session, alert_id=_row_id(row_id), now=now
            )
            return {"newly_acknowledged": newly}

        async def done(row_id: str, details: dict[str, Any]) -> str:
            if details["newly_acknowledged"]:
                return f"alert {row_id} acknowledged"
            return f"alert {row_id} was acknowledged already"

        return await self.perform(
            request, action="operator_alert.acknowledge", change=change, done=done
        )


class ConsoleAuditView(ConsoleModelView, model=ConsoleAuditEntry):
    name = "Console audit entry"
    name_plural = "Console audit"
    icon = "fa-solid fa-clipboard-list"
    column_list = [
        ConsoleAuditEntry.at,
        ConsoleAuditEntry.actor_user_id,
        ConsoleAuditEntry.action,
        ConsoleAuditEntry.target,
        ConsoleAuditEntry.outcome,
        ConsoleAuditEntry.details,
    ]
    column_filters = [
        AllUniqueStringValuesFilter(ConsoleAuditEntry.action),
        AllUniqueStringValuesFilter(ConsoleAuditEntry.outcome),
    ]
    column_default_sort = (ConsoleAuditEntry.at, True)


def _row_id(value: str) -> int:
    # A forged or stale id is a refusal for that row, not a 500.
    if not value.isdigit() or int(value) > 2**63 - 1:
        raise InvalidRequest(f"not a row id: {value!r}")
    return int(value)


__all__ = [
    "BillingHistoryView",
    "ConsoleAuditView",
    "CustomerView",
    "NotificationView",
    "OperatorAlertView",
    "OverageChargeView",
    "StripeEventView",
    "SubscriptionView",
    "UsagePeriodView",
]
