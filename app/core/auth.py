"""Bearer JWTs from the dashboard → a `Principal`.

Tokens are the dashboard's SimpleJWT access tokens (or anything shaped like them):
- the algorithm is pinned by `JWT_ALGORITHM`, never read from the token, so `alg: none` and an
  HS256 token signed with our RS256 public key are refused;
- the user id is the claim `JWT_USER_ID_CLAIM` (default `user_id`), else `sub`; a string or a
  number that matches `JWT_USER_ID_PATTERN` (the dashboard's integer ids by default), so an id
  is always a value we can store, log and put into a Stripe query safely;
- `token_type` must be present and be `access`: SimpleJWT always sends it, and a refresh token
  (or a token of another issuer's kind) is refused;
- `exp` is required; `exp` and `nbf` must be integers (JSON numbers without a fraction, as
  SimpleJWT writes them: 1e400, NaN or "soon" would never expire) and are checked against the
  injected clock with `JWT_LEEWAY_SECONDS` of skew; `aud` and `iss` only when configured;
- roles come from a `roles` claim: `billing_admin` and `service` mean something here.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

import structlog
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import JWTError, jwt

from app.core.config import Settings
from app.core.deps import ClockDep, SettingsDep
from app.core.errors import Forbidden, Unauthorized

ROLE_BILLING_ADMIN = "billing_admin"
ROLE_SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    email: str | None = None
    name: str | None = None

    @property
    def is_billing_admin(self) -> bool:
        return ROLE_BILLING_ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        return ROLE_SERVICE in self.roles


# Whatever JWT_USER_ID_PATTERN allows, never quotes, backslashes, spaces or control
# characters: the id goes into Stripe metadata, search queries and log lines.
_SAFE_USER_ID = re.compile(r"[A-Za-z0-9._:@+-]{1,255}")


def _user_id_from(claims: dict[str, Any], settings: Settings) -> str:
    value = claims.get(settings.JWT_USER_ID_CLAIM)
    if value is None:
        value = claims.get("sub")
    # bool is an int in Python; a user id of `true` is a malformed token, not user 1.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Unauthorized("The token names no user.")
    user_id = str(value)
    if not (_SAFE_USER_ID.fullmatch(user_id) and settings.user_id_pattern.fullmatch(user_id)):
        raise Unauthorized("The token's user id is not a dashboard user id.")
    return user_id


# Seconds since the epoch up to the year 9999: a bigger `exp` is not a date but a way to
# make a token that never expires.
_LATEST_TIMESTAMP = 253_402_300_799


def _timestamp_claim(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    # JSON decodes 1e400 to inf and NaN to nan, both floats; only an integer is a timestamp.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LATEST_TIMESTAMP:
        raise Unauthorized(f"The token's `{name}` claim is not a timestamp.")
    return value


def _roles_from(claims: dict[str, Any]) -> frozenset[str]:
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(role for role in roles if isinstance(role, str))


def _optional_text(claims: dict[str, Any], name: str, max_length: int) -> str | None:
    """A descriptive claim; one we cannot store (too long, NUL) is ignored, not fatal."""
    value = claims.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_length or "\x00" in value:
        return None
    return value


# One plain address: no whitespace, control characters or header syntax, since it becomes
# an email's To header (a CR/LF in it would add headers of the claim's choosing).
_PLAIN_EMAIL_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,253}")


def _optional_email(claims: dict[str, Any]) -> str | None:
    """The email claim when it is one plain address; anything else is ignored, like a claim
    too long to store (the account simply has no email to write to)."""
    value = _optional_text(claims, "email", max_length=320)
    if value is None or not _PLAIN_EMAIL_ADDRESS.fullmatch(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class _VerifiedToken:
    """What a token's signature and every claim but the time ones established."""

    principal: Principal
    expires_at: int
    not_before: int | None


class _VerifiedTokens:
    """Tokens already verified, so a caller's next request skips the signature and claims.

    Keyed by the token and every setting its verification depended on (key, algorithm,
    audience, issuer, user id claim and pattern), so a changed setting verifies afresh. Only
    tokens that passed are kept; the time claims are checked against the clock on every use,
    cached or not, and a token found expired is dropped. Bounded: past `max_entries`, expired
    tokens go first, then the oldest.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, ...], _VerifiedToken] = {}

    def get(self, key: tuple[str, ...]) -> _VerifiedToken | None:
        return self._entries.get(key)

    def put(self, key: tuple[str, ...], verified: _VerifiedToken, now: float) -> None:
        if len(self._entries) >= self.max_entries:
            expired = [k for k, entry in self._entries.items() if entry.expires_at < now]
            for stale in expired:
                del self._entries[stale]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = verified

    def drop(self, key: tuple[str, ...]) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


verified_tokens = _VerifiedTokens(max_entries=10_000)


def _check_time(
    expires_at: int, not_before: int | None, settings: Settings, timestamp: float
) -> None:
    leeway = settings.JWT_LEEWAY_SECONDS
    if timestamp > expires_at + leeway:
        raise Unauthorized("The token has expired.")
    if not_before is not None and timestamp < not_before - leeway:
        raise Unauthorized("The token is not valid yet.")


def _verify(token: str, settings: Settings, timestamp: float) -> _VerifiedToken:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_verification_key,
            algorithms=[settings.JWT_ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            # Time claims are checked by the caller against the injected clock, on every use.
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": settings.JWT_AUDIENCE is not None,
                "verify_iss": settings.JWT_ISSUER is not None,
                # Configured means required: a token without the claim is not for us.
                "require_aud": settings.JWT_AUDIENCE is not None,
                "require_iss": settings.JWT_ISSUER is not None,
            },
        )
    except JWTError:
        raise Unauthorized("The token is invalid.") from None

    expires_at = _timestamp_claim(claims, "exp")
    if expires_at is None:
        raise Unauthorized("The token has no expiry.")
    not_before = _timestamp_claim(claims, "nbf")
    _check_time(expires_at, not_before, settings, timestamp)

    if claims.get("token_type") != "access":
        raise Unauthorized("Only access tokens are accepted.")

    principal = Principal(
        user_id=_user_id_from(claims, settings),
        roles=_roles_from(claims),
        email=_optional_email(claims),
        name=_optional_text(claims, "name", max_length=255),
    )
    return _VerifiedToken(principal, expires_at, not_before)


def decode_access_token(token: str, settings: Settings, now: datetime) -> Principal:
    """Verify a bearer token and return who it speaks for; raise `Unauthorized` otherwise.

    A token verified before (same settings) is not verified again, but its expiry and
    not-before are checked against `now` every time.
    """
    key = (
        token,
        settings.jwt_verification_key,
        settings.JWT_ALGORITHM,
        settings.JWT_AUDIENCE or "",
        settings.JWT_ISSUER or "",
        settings.JWT_USER_ID_CLAIM,
        settings.JWT_USER_ID_PATTERN,
    )
    timestamp = now.timestamp()
    verified = verified_tokens.get(key)
    if verified is None:
        verified = _verify(token, settings, timestamp)
        verified_tokens.put(key, verified, timestamp)
        return verified.principal
    try:
        _check_time(verified.expires_at, verified.not_before, settings, timestamp)
    except Unauthorized:
        # Expired for good (a not-yet-valid token is kept: it becomes valid).
        if timestamp > verified.expires_at + settings.JWT_LEEWAY_SECONDS:
            verified_tokens.drop(key)
        raise
    return verified.principal


def issue_access_token(
    settings: Settings,
    *,
    user_id: str,
    roles: list[str],
    now: datetime,
    lifetime: timedelta,
    signing_key: str | None = None,
    email: str | None = None,
) -> str:
    """A SimpleJWT-shaped access token, for local use and tests (`billing issue-token`)."""
    claims: dict[str, Any] = {
        "token_type": "access",
        settings.JWT_USER_ID_CLAIM: user_id,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid4().hex,
    }
    if roles:
        claims["roles"] = roles
    if email:
        claims["email"] = email
    if settings.JWT_AUDIENCE:
        claims["aud"] = settings.JWT_AUDIENCE
    if settings.JWT_ISSUER:
        claims["iss"] = settings.JWT_ISSUER
    key = signing_key or settings.jwt_verification_key
    return jwt.encode(claims, key, algorithm=settings.JWT_ALGORITHM)


_bearer = HTTPBearer(auto_error=False, description="The dashboard's access token (JWT).")


async def get_principal(
    settings: SettingsDep,
    clock: ClockDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    principal = decode_access_token(credentials.credentials, settings, clock.now())
    # Every line logged for the rest of the request says whose it is.
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def require_billing_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_billing_admin:
        raise Forbidden("This needs the billing_admin role.")
    return principal


BillingAdmin = Annotated[Principal, Depends(require_billing_admin)]


async def require_service(principal: CurrentPrincipal) -> Principal:
    if not principal.is_service:
        raise Forbidden("This needs the service role.")
    return principal


ServicePrincipal = Annotated[Principal, Depends(require_service)]
