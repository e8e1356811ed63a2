"""The process's Prometheus metrics: counted where things happen, served by `app.metrics`.

They live in this process's own registry (the API's and the worker's are separate, each
served by its own endpoint): prometheus-client's multiprocess mode would need a directory
shared by every process, which separate containers do not have. Values that are the same
for every process (rows by status, the queue's depth) are not here: `app.metrics` reads
them from PostgreSQL and Redis when scraped.

Label values are a small fixed set (route templates, not paths; outcome names, not error
messages), so a scrape stays small whatever the traffic.
"""

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

HTTP_REQUEST_DURATION = Histogram(
    "billing_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ["method", "route", "status"],
    # From the quota check (a millisecond or two) to a first PDF rendering (seconds).
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

RATE_LIMITED_REQUESTS = Counter(
    "billing_rate_limited_requests",
    "Requests answered 429 because a rate limit was exhausted, by limit.",
    ["limit"],
    registry=REGISTRY,
)

RATE_LIMIT_FAIL_OPEN = Counter(
    "billing_rate_limit_fail_open",
    "Requests let through unchecked because the rate-limit store (Redis) failed "
    "(storage_error) or failed moments ago (paused).",
    ["reason"],
    registry=REGISTRY,
)

STRIPE_CALLS = Counter(
    "billing_stripe_calls",
    "Calls to Stripe's API by outcome (success, or the kind of Stripe error).",
    ["outcome"],
    registry=REGISTRY,
)

FAILED_PAYMENT_ATTEMPTS = Counter(
    "billing_failed_payment_attempts",
    "Failed payment attempts recorded from invoice.payment_failed events (Stripe's retries "
    "of an open invoice included).",
    registry=REGISTRY,
)

PAYMENT_RETRIES = Counter(
    "billing_payment_retries",
    "The service's own attempts at a failed invoice (dunning), by outcome: paid, declined, "
    "action_required, not_open (paid or closed elsewhere first), canceled (the subscription "
    "ended or recovered before it ran).",
    ["outcome"],
    registry=REGISTRY,
)

USAGE_ALERTS_RAISED = Counter(
    "billing_usage_alerts_raised",
    "Usage alerts created, by kind (usage_threshold, overage, usage_anomaly).",
    ["kind"],
    registry=REGISTRY,
)

NOTIFICATION_DELIVERIES = Counter(
    "billing_notification_deliveries",
    "Attempts at delivering a notification, by channel (email, dashboard) and outcome: sent, "
    "retried (a temporary failure, tried again later), dead (attempts used up, or refused for "
    "good), skipped (the channel is not configured, or the customer has no email address).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
