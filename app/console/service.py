"""The console's own records: the audit trail of what operators changed, and one-time links."""

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.console import repository

Outcome = Literal["done", "refused", "failed"]


async def record_action(
    session: AsyncSession,
    *,
    actor_user_id: str,
    action: str,
    target: str,
    now: datetime,
    outcome: Outcome = "done",
    details: dict[str, Any] | None = None,
) -> None:
    """Audit one console action in the caller's transaction: with the change it describes,
    so a change rolled back leaves no entry claiming it happened."""
    await repository.insert_audit_entry(
        session,
        at=now,
        actor_user_id=actor_user_id,
        action=action,
        target=target,
        outcome=outcome,
        details=details or {},
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_sign_in_link(
    session: AsyncSession, *, user_id: str, now: datetime, lifetime: timedelta
) -> str:
    """A new one-time link secret for `user_id`. Only its SHA-256 is stored: whoever reads
    the table cannot sign in with it."""
    secret = secrets.token_urlsafe(32)
    await repository.insert_sign_in_link(
        session,
        secret_sha256=_digest(secret),
        user_id=user_id,
        created_at=now,
        expires_at=now + lifetime,
    )
    return secret


async def use_sign_in_link(session: AsyncSession, *, secret: str, now: datetime) -> str | None:
    """The operator a link signs in, once: None when the link is unknown, used or expired."""
    return await repository.use_sign_in_link(session, secret_sha256=_digest(secret), now=now)
