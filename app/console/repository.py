from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ConsoleAuditEntry, ConsoleSignInLink


async def insert_audit_entry(
    session: AsyncSession,
    *,
    at: datetime,
    actor_user_id: str,
    action: str,
    target: str,
    outcome: str,
    details: dict[str, Any],
) -> None:
    await session.execute(
        insert(ConsoleAuditEntry).values(
            at=at,
            actor_user_id=actor_user_id,
            action=action,
            target=target,
            outcome=outcome,
            details=details,
        )
    )


async def insert_sign_in_link(
    session: AsyncSession,
    *,
    secret_sha256: str,
    user_id: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    await session.execute(
        insert(ConsoleSignInLink).values(
            secret_sha256=secret_sha256,
            user_id=user_id,
            created_at=created_at,
            expires_at=expires_at,
        )
    )


async def use_sign_in_link(
    session: AsyncSession, *, secret_sha256: str, now: datetime
) -> str | None:
    """The link's user id when this call used it; None when it is unknown, used or expired.
    One conditional UPDATE: two requests racing with the same link cannot both win."""
    result = await session.execute(
        update(ConsoleSignInLink)
        .where(
            ConsoleSignInLink.secret_sha256 == secret_sha256,
            ConsoleSignInLink.used_at.is_(None),
            ConsoleSignInLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(ConsoleSignInLink.user_id)
    )
    return result.scalar_one_or_none()
