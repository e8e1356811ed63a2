"""The two ways a notification leaves: email (SMTP, or `.eml` files without SMTP settings)
and the dashboard's signed webhook. Each send answers with an outcome the delivery loop
records; neither touches the database."""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosmtplib
import httpx
import structlog

from app.core.config import Settings
from app.core.signing import stripe_scheme_signature
from app.notifications.emails import EmailRenderer, build_message
from app.notifications.signing import SIGNATURE_HEADER

logger = structlog.get_logger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0
DASHBOARD_TIMEOUT_SECONDS = 15.0
# What is kept of a receiver's answer (status line and the start of its body).
ANSWER_KEPT_CHARS = 500
# Timeouts and throttling: the dashboard asks us to come back later.
RETRIED_CLIENT_ERRORS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class OutgoingNotice:
    """One notification as its channels need it."""

    event_id: str
    kind: str
    created: datetime
    data: dict[str, Any]
    customer_email: str | None
    customer_name: str | None
    dashboard_user_id: str


@dataclass(frozen=True, slots=True)
class SendOutcome:
    # sent; retry (a temporary failure); dead (refused for good); skipped (nowhere to send).
    result: Literal["sent", "retry", "dead", "skipped"]
    answer: str | None = None
    error: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, notice: OutgoingNotice, *, now: datetime) -> SendOutcome: ...


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._renderer = EmailRenderer(locale=settings.INVOICE_LOCALE)

    async def send(self, notice: OutgoingNotice, *, now: datetime) -> SendOutcome:
        if not notice.customer_email:
            return SendOutcome("skipped", error="the customer has no email address")
        rendered = self._renderer.render(
            kind=notice.kind, data=notice.data, customer_name=notice.customer_name
        )
        message = build_message(
            rendered,
            sender=self._settings.EMAIL_FROM,
            recipient=notice.customer_email,
            message_key=notice.event_id,
            sent_at=now,
        )
        if not self._settings.SMTP_HOST:
            return self._write_to_outbox(notice, message.as_bytes(), rendered.subject)
        settings = self._settings
        try:
            _, reply = await aiosmtplib.send(
                message,
                hostname=settings.SMTP_HOST,
                port=settings.SMTP_PORT,
                username=settings.SMTP_USERNAME,
                password=settings.SMTP_PASSWORD.get_secret_value()
                if settings.SMTP_PASSWORD
                else None,
                start_tls=settings.SMTP_STARTTLS,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [recipient.code for recipient in refused.recipients]
            permanent = all(code >= 500 for code in codes)
            return SendOutcome("dead" if permanent else "retry", error=_clip(str(refused)))
        except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as error:
            # This message or its recipient refused with 5xx (content, size, mailbox): sending
            # it again gets the same answer. 4xx is "later".
            permanent = error.code >= 500
            return SendOutcome(
                "dead" if permanent else "retry",
                answer=_clip(f"{error.code} {error.message}"),
                error=_clip(str(error)),
            )
        except aiosmtplib.SMTPResponseException as error:
            # Authentication, greeting, STARTTLS or sender refusals are about our SMTP settings,
            # not this message: a 5xx here would fail every email alike, so it is retried (and
            # logged as an error) until an operator fixes the settings or the attempts run out.
            logger.error(
                "smtp_refused_our_settings",
                code=error.code,
                reply=_clip(error.message),
                error_type=type(error).__name__,
            )
            return SendOutcome(
                "retry",
                answer=_clip(f"{error.code} {error.message}"),
                error=_clip(str(error)),
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return SendOutcome("retry", error=_clip(f"{type(error).__name__}: {error}"))
        return SendOutcome("sent", answer=_clip(reply))

    def _write_to_outbox(self, notice: OutgoingNotice, raw: bytes, subject: str) -> SendOutcome:
        """No SMTP server configured (`make run`): the email, as it would be sent, in a file
        a newcomer can open, and in the log."""
        directory = Path(self._settings.NOTIFICATION_OUTBOX_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{notice.event_id}-{notice.kind}.eml"
        path.write_bytes(raw)
        logger.info(
            "email_written_to_outbox",
            path=str(path),
            to=notice.customer_email,
            subject=subject,
            kind=notice.kind,
        )
        return SendOutcome("sent", answer=f"written to {path}")


def dashboard_event(notice: OutgoingNotice) -> bytes:
    """The JSON body: the same bytes on every retry (only the signature's timestamp moves)."""
    event = {
        "id": notice.event_id,
        "type": notice.kind,
        "created": int(notice.created.timestamp()),
        "customer": notice.dashboard_user_id,
        "data": notice.data,
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


class DashboardChannel:
    name = "dashboard"

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        self._url = settings.DASHBOARD_WEBHOOK_URL
        secret = settings.DASHBOARD_WEBHOOK_SECRET
        self._secret = secret.get_secret_value() if secret else None
        self._transport = transport

    async def send(self, notice: OutgoingNotice, *, now: datetime) -> SendOutcome:
        if not self._url or not self._secret:
            return SendOutcome("skipped", error="DASHBOARD_WEBHOOK_URL is not set")
        body = dashboard_event(notice)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: stripe_scheme_signature(
                body, secret=self._secret, timestamp=int(now.timestamp())
            ),
            # Also in the body: lets a receiver drop a duplicate before parsing it.
            "Billing-Event-Id": notice.event_id,
        }
        try:
            async with httpx.AsyncClient(
                timeout=DASHBOARD_TIMEOUT_SECONDS, transport=self._transport
            ) as client:
                response = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return SendOutcome("retry", error=_clip(f"{type(error).__name__}: {error}"))
        answer = _clip(f"{response.status_code} {response.text}")
        if response.is_success:
            return SendOutcome("sent", answer=answer)
        if 400 <= response.status_code < 500 and response.status_code not in (
            RETRIED_CLIENT_ERRORS
        ):
            # The dashboard refuses this event (a bad signature, an unknown customer):
            # sending it again would be refused again.
            return SendOutcome("dead", answer=answer, error=f"HTTP {response.status_code}")
        return SendOutcome("retry", answer=answer, error=f"HTTP {response.status_code}")


def _clip(text: str) -> str:
    return text if len(text) <= ANSWER_KEPT_CHARS else text[: ANSWER_KEPT_CHARS - 1] + "…"
