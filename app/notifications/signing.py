"""The dashboard webhook's signature: Stripe's scheme, so the dashboard verifies it the way
it would verify Stripe's (README, "Notifications").

Header `Billing-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed
with DASHBOARD_WEBHOOK_SECRET, computed by `app.core.signing.stripe_scheme_signature`."""

SIGNATURE_HEADER = "Billing-Signature"
