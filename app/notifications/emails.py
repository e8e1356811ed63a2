"""Emails from templates: one Jinja2 template per notification kind, under
`email_templates/`, with three blocks: `subject`, `text` (plain text) and `html`.

The HTML block is rendered by an environment that escapes every value, so a customer's name
or a decline message can never become markup; the subject and plain text are rendered
without escaping (they are not HTML). Amounts go through the money type's one formatter."""

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, Template, TemplateNotFound
from markupsafe import Markup

from app.core.money import Money, format_money

TEMPLATES = Path(__file__).parent / "email_templates"
FALLBACK_TEMPLATE = "_generic.j2"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _environment(*, escape: bool, locale: str) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        # Off only for the subject and the plain text, which are not HTML.
        autoescape=escape,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )

    def money(amount: int | None, currency: str | None) -> str:
        if amount is None or not currency:
            return ""
        return format_money(Money(int(amount), currency), locale)

    def day(moment: str | datetime | None) -> str:
        if not moment:
            return ""
        value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        return format_date(value, format="long", locale=locale)

    environment.filters["money"] = money
    environment.filters["day"] = day
    return environment


class EmailRenderer:
    def __init__(self, *, locale: str) -> None:
        self._plain = _environment(escape=False, locale=locale)
        self._html = _environment(escape=True, locale=locale)
        self._layout = self._html.get_template("_layout.html.j2")

    def _template(self, environment: Environment, kind: str) -> Template:
        try:
            return environment.get_template(f"{kind}.j2")
        except TemplateNotFound:
            return environment.get_template(FALLBACK_TEMPLATE)

    @staticmethod
    def _block(template: Template, name: str, context: dict[str, Any]) -> str:
        return "".join(template.blocks[name](template.new_context(context))).strip()

    def render(
        self, *, kind: str, data: dict[str, Any], customer_name: str | None
    ) -> RenderedEmail:
        context = {"kind": kind, "data": data, "name": customer_name or ""}
        plain = self._template(self._plain, kind)
        html_template = self._template(self._html, kind)
        subject = " ".join(self._block(plain, "subject", context).split())
        body = Markup(self._block(html_template, "html", context))  # noqa: S704 (escaped above)
        return RenderedEmail(
            subject=subject,
            text=self._block(plain, "text", context) + "\n",
            html=self._layout.render(subject=subject, body=body),
        )


def build_message(
    email: RenderedEmail, *, sender: str, recipient: str, message_key: str, sent_at: datetime
) -> EmailMessage:
    """A multipart/alternative message; `message_key` (the notification's event id) makes
    its Message-ID, the same on every retry, so a receiving server can drop a duplicate."""
    message = EmailMessage()
    message["Subject"] = email.subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(sent_at)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{message_key}@{domain}>"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message
