"""arq jobs and crons of the usage domain: overage billing's jobs and sweeps, and the
anomaly check. Each takes the typed job context (`app.jobs.context`)."""

from app.jobs.context import JobContext, job
from app.usage import anomaly
from app.usage.overage_billing import sweeps
from app.usage.overage_billing.invoicing import bill_charge


@job
async def bill_overage_charge(context: JobContext, charge_id: int) -> str:
    """Bill one charge (enqueued by the sweeper, a job id per attempt)."""
    return await bill_charge(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        charge_id=charge_id,
    )


@job
async def bill_ended_subscription_usage(context: JobContext, subscription_id: int) -> int:
    """Bill an ended subscription's last usage periods (enqueued by an immediate cancel)."""
    return await sweeps.bill_ended_subscription(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        subscription_id=subscription_id,
    )


@job
async def sweep_overage_charges(context: JobContext) -> int:
    """Cron: enqueue every charge still pending; alert on one stuck."""
    return await sweeps.sweep_pending_charges(
        sessionmaker=context.sessionmaker, redis=context.redis, now=context.clock.now()
    )


@job
async def close_ended_usage_periods(context: JobContext) -> int:
    """Cron: close the periods no invoice closes."""
    return await sweeps.close_unclosed_periods(
        sessionmaker=context.sessionmaker, gateway=context.stripe_gateway, clock=context.clock
    )


@job
async def bill_overage_adjustments(context: JobContext) -> int:
    """Cron: adjustment charges for records that arrived after their period was billed."""
    return await sweeps.bill_late_records(
        sessionmaker=context.sessionmaker, gateway=context.stripe_gateway, clock=context.clock
    )


@job
async def detect_usage_anomalies(context: JobContext) -> int:
    """Cron (hourly): alert on today's and yesterday's anomalous days."""
    return await anomaly.alert_on_anomalous_days(
        sessionmaker=context.sessionmaker, now=context.clock.now()
    )
