"""The worker process: `arq app.worker.WorkerSettings`.

Startup builds one `JobContext` (settings, clock, session factory, Stripe gateway, Redis)
and every job receives it through `app.jobs.context.job`; a job owns its transaction the
way a request does. Each domain's jobs live in its `tasks.py`.

Run it with our logging: `arq app.worker.WorkerSettings --custom-log-dict app.worker.log_config`
(arq's own lines are then JSON in production like ours). Jobs are stored as JSON, not pickle
(`app.jobs.queue`).
"""

from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings
from arq.cron import CronJob

from app.billing_history.tasks import archive_billing_records_nightly
from app.core.clock import SystemClock
from app.core.config import ConfigurationError, get_settings, refuse_to_start
from app.core.db import create_engine, create_sessionmaker
from app.core.logging import configure_logging
from app.health.tasks import record_worker_heartbeat
from app.idempotency.tasks import purge_expired_idempotency_keys
from app.jobs.context import CONTEXT_KEY, JobContext, bind_job_log_context
from app.jobs.queue import dump_job, load_job
from app.metrics.worker_endpoint import start_worker_metrics_endpoint, stop_worker_metrics_endpoint
from app.notifications.tasks import deliver_notifications, sweep_notifications
from app.stripe_gateway.client import StripeGateway
from app.stripe_sync.tasks import reconcile_stripe_nightly
from app.subscriptions.tasks import (
    remind_trials_ending,
    retry_payment_with_new_card,
    run_payment_retry,
    sweep_dunning,
)
from app.usage.tasks import (
    bill_ended_subscription_usage,
    bill_overage_adjustments,
    bill_overage_charge,
    close_ended_usage_periods,
    detect_usage_anomalies,
    sweep_overage_charges,
)
from app.webhooks.tasks import (
    process_stripe_event,
    purge_stripe_event_payloads,
    sweep_stripe_events,
)


def _redis_settings() -> RedisSettings:
    try:
        return RedisSettings.from_dsn(get_settings().redis_url)
    except ConfigurationError as error:
        refuse_to_start(str(error))


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    # Again, for a worker started without `--custom-log-dict`: this takes the `arq` logger
    # back from the plain-text handler arq's CLI gave it.
    configure_logging(settings)
    engine = create_engine(settings)
    ctx["engine"] = engine
    ctx["metrics_endpoint"] = start_worker_metrics_endpoint(settings)
    ctx[CONTEXT_KEY] = JobContext(
        settings=settings,
        clock=SystemClock(),
        sessionmaker=create_sessionmaker(engine),
        stripe_gateway=StripeGateway(settings),
        # arq's own connection: what the jobs enqueue follow-up work on.
        redis=ctx["redis"],
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    stop_worker_metrics_endpoint(ctx.get("metrics_endpoint"))
    await ctx["engine"].dispose()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [
        process_stripe_event,
        bill_overage_charge,
        bill_ended_subscription_usage,
        run_payment_retry,
        retry_payment_with_new_card,
        deliver_notifications,
    ]
    cron_jobs: ClassVar[list[CronJob]] = [
        cron(record_worker_heartbeat, second={0, 30}, run_at_startup=True),
        cron(purge_expired_idempotency_keys, minute={7}, second={0}),
        cron(sweep_stripe_events, second={15}, run_at_startup=True),
        cron(purge_stripe_event_payloads, hour={3}, minute={17}, second={0}),
        cron(reconcile_stripe_nightly, hour={2}, minute={41}, second={0}, timeout=3600),
        # Overage: pending charges every minute (a renewal is a draft for about an hour), the
        # periods no invoice closes and the late records every ten minutes.
        cron(sweep_overage_charges, second={45}, run_at_startup=True),
        # Notifications: every delivery due (new, a retry, lost with Redis) every 10 seconds.
        cron(sweep_notifications, second=set(range(0, 60, 10)), run_at_startup=True),
        # Trials ending within three days that Stripe's trial_will_end did not announce.
        cron(remind_trials_ending, minute={11}, second={0}),
        # Dunning: retries due (or lost with Redis or a worker), suspensions, final cancels.
        cron(sweep_dunning, second={50}, run_at_startup=True, timeout=900),
        cron(close_ended_usage_periods, minute=set(range(2, 60, 10)), second={0}, timeout=900),
        cron(bill_overage_adjustments, minute=set(range(7, 60, 10)), second={0}, timeout=900),
        cron(detect_usage_anomalies, minute={23}, second={0}, timeout=900),
        # Does nothing unless ARCHIVE_AFTER_DAYS is set; a large first run may take a while,
        # and a run cut short by the timeout simply continues the next night.
        cron(archive_billing_records_nightly, hour={3}, minute={30}, second={0}, timeout=3600),
    ]
    on_startup = startup
    on_shutdown = shutdown
    on_job_start = bind_job_log_context
    job_serializer = dump_job
    job_deserializer = load_job
    redis_settings = _redis_settings()


def __getattr__(name: str) -> object:
    # `arq --custom-log-dict app.worker.log_config` reads this right before it would install
    # its own plain-text handler: configure ours instead and give arq a configuration that
    # changes nothing, so its first lines ("Starting worker ...") are rendered like ours.
    if name == "log_config":
        configure_logging(get_settings())
        return {"version": 1, "incremental": True}
    raise AttributeError(name)
