from app.core.errors import AppError, NotFound


class InvalidWebhook(AppError):
    status_code = 400
    code = "invalid_webhook"
    message = "Not a Stripe event signed with this endpoint's secret, or too old."


class WebhookEventNotFound(NotFound):
    code = "webhook_event_not_found"
    message = "No such webhook event."
