"""Real local receivers for delivery tests: an SMTP server (aiosmtpd) and an HTTP server
standing in for the dashboard's webhook endpoint, both on free ports in the test's loop."""

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class ReceivedEmail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return cast(str, body.get_content())


class SmtpReceiver:
    """aiosmtpd's SMTP protocol on a local port; keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[ReceivedEmail] = []
        # Recipients refused for good (550), as a server refuses an unknown mailbox.
        self.unknown_mailboxes: set[str] = set()
        # Senders refused for good (553), as a server refuses a From it does not relay for.
        self.refused_senders: set[str] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refused_senders:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.unknown_mailboxes:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.received.append(
            ReceivedEmail(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                message=message,
            )
        )
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="smtp.test", loop=loop), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class DashboardReceiver:
    """A minimal HTTP/1.1 server: records each POST and answers `status` with `answer`.
    `stop()` closes the port (connections are refused), `start()` opens the same port
    again: a receiver that is down, then back."""

    status: int = 200
    answer: bytes = b'{"received": true}'
    requests: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/billing/events/"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.strip().split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(ReceivedRequest(method, path, headers, body))
        writer.write(
            f"HTTP/1.1 {self.status} Answer\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.answer)}\r\nConnection: close\r\n\r\n".encode()
            + self.answer
        )
        await writer.drain()
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def event_ids(self) -> list[Any]:
        import json

        return [json.loads(request.body)["id"] for request in self.requests]
