"""Settings: the only place that reads the environment (and `.env`).

Names and defaults of the dashboard's original billing module are kept (`STRIPE_*`,
`TRIAL_PERIOD_DAYS`, `GRACE_PERIOD_DAYS`, `MAX_PAYMENT_RETRIES`). `.env.example` lists every
setting with a comment.
"""

import ipaddress
import itertools
import re
import sys
from datetime import timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal, NoReturn

from babel import Locale, UnknownLocaleError
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.branding_values import (
    BrandingValueError,
    normalize_hex_color,
    normalize_number_prefix,
)
from app.core.money import normalize_currency

_PLACEHOLDER_MARKERS = ("change-me", "changeme", "your_", "your-", "placeholder", "example")


def _is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return not lowered or any(marker in lowered for marker in _PLACEHOLDER_MARKERS)


def _require_real_secret(name: str, value: str) -> None:
    """A secret that signs or verifies what a caller sends (tokens, cookies, events): a
    placeholder or a short one can be guessed offline from anything it signed."""
    if _is_placeholder(value) or len(value) < 32:
        raise ValueError(f"{name} must be a real secret of 32+ characters in production")


class ConfigurationError(Exception):
    """A setting that must not be started with; the message is one line for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        # NAME= (empty) means unset, so a copied .env.example runs on the defaults.
        env_ignore_empty=True,
    )

    ENVIRONMENT: Literal["development", "test", "production"] = "development"
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=1, le=65535)
    LOG_LEVEL: str = "INFO"
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses
    # or networks. None by default, so a client cannot choose the address it is rate-limited
    # and logged by.
    FORWARDED_ALLOW_IPS: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Stores. Unset means: `make run` starts the embedded PostgreSQL and Redis.
    DATABASE_URL: str | None = None
    REDIS_URL: str | None = None
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1)
    # Freeze what exists once the API has started and collect garbage less often
    # (app/core/garbage_collection.py). Off in the tests, which start hundreds of apps in
    # one process.
    TUNE_GARBAGE_COLLECTOR: bool = True

    # Stripe (names and defaults of the original module).
    STRIPE_PUBLISHABLE_KEY: str = ""
    STRIPE_SECRET_KEY: SecretStr | None = None
    # Comma-separated while rotating: every listed secret is accepted.
    STRIPE_WEBHOOK_SECRET: SecretStr | None = None
    STRIPE_LIVE_MODE: bool = False
    STRIPE_SUCCESS_URL: str = "http://localhost:3000/billing/success"
    STRIPE_CANCEL_URL: str = "http://localhost:3000/billing/cancel"
    # Where the billing portal's return link leads (the dashboard's billing page).
    STRIPE_PORTAL_RETURN_URL: str = "http://localhost:3000/billing"
    STRIPE_AUTOMATIC_TAX: bool = False
    STRIPE_API_BASE: str | None = None
    # stripe-python's own retries of a request that timed out or could not connect.
    STRIPE_MAX_NETWORK_RETRIES: int = Field(default=2, ge=0, le=5)
    STRIPE_TIMEOUT_SECONDS: float = Field(default=20.0, gt=0, le=120)

    # Webhooks: attempts before an event is `failed`, and how long payloads are kept.
    WEBHOOK_MAX_ATTEMPTS: int = Field(default=6, ge=1, le=20)
    WEBHOOK_PAYLOAD_RETENTION_DAYS: int = Field(default=90, ge=1)

    # Subscriptions.
    TRIAL_PERIOD_DAYS: int = Field(default=14, ge=0)
    # Dunning: days of access kept after an invoice first fails (fractions allowed, so a
    # staging system can use minutes), the service's own retries of it, and what follows
    # when both are used up (see `app.subscriptions.dunning`).
    GRACE_PERIOD_DAYS: float = Field(default=3, ge=0)
    MAX_PAYMENT_RETRIES: int = Field(default=3, ge=0, le=20)
    # When each retry runs, counted from the first failure: `1d,2d,3d`, `30m,2h`, `90s`.
    # Empty: spread evenly over the grace period (retry k of n at k/n of it).
    PAYMENT_RETRY_DELAYS: Annotated[list[timedelta], NoDecode] = Field(default_factory=list)
    DUNNING_FINAL_ACTION: Literal["suspend", "cancel"] = "suspend"
    # With `cancel`: days after the suspension before the subscription is canceled.
    DUNNING_CANCEL_AFTER_DAYS: float = Field(default=14, ge=0)
    BILLING_CURRENCY: str = "usd"

    # Authentication (tokens issued by the dashboard, SimpleJWT-compatible).
    JWT_SECRET: SecretStr | None = None
    JWT_PUBLIC_KEY: str | None = None
    JWT_ALGORITHM: Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256"] = "HS256"
    JWT_AUDIENCE: str | None = None
    JWT_ISSUER: str | None = None
    JWT_USER_ID_CLAIM: str = "user_id"
    # What a dashboard user id looks like (matched whole): Django's integer primary keys by
    # default; "[0-9a-f]{32}" would take hex UUIDs. Whatever the pattern, an id is at most
    # 255 letters, digits and `._:@+-` (it is stored, logged and sent to Stripe).
    JWT_USER_ID_PATTERN: str = "0|[1-9][0-9]{0,18}"
    JWT_LEEWAY_SECONDS: int = Field(default=30, ge=0, le=300)

    # Browser callers: the dashboard's origins. None by default.
    CORS_ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Notifications (README, "Notifications"). The dashboard's webhook: unset, that channel
    # is skipped; its secret signs each event like Stripe's (32+ characters in production).
    DASHBOARD_WEBHOOK_URL: str | None = None
    DASHBOARD_WEBHOOK_SECRET: SecretStr | None = None
    # Email. Unset SMTP_HOST: emails go to the log and to .eml files in NOTIFICATION_OUTBOX_DIR.
    SMTP_HOST: str | None = None
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    # STARTTLS after connecting (port 587). SMTP_USE_TLS, the earlier name, still works.
    SMTP_STARTTLS: bool = Field(
        default=True, validation_alias=AliasChoices("SMTP_STARTTLS", "SMTP_USE_TLS")
    )
    # The sender. SMTP_FROM_EMAIL, the earlier name, still works.
    EMAIL_FROM: str = Field(
        default="billing@localhost", validation_alias=AliasChoices("EMAIL_FROM", "SMTP_FROM_EMAIL")
    )
    NOTIFICATION_OUTBOX_DIR: Path = Path(".data/outbox")
    # Attempts per channel before a delivery is `dead` (backing off from 30 s to an hour).
    NOTIFICATION_MAX_ATTEMPTS: int = Field(default=10, ge=1, le=50)

    # Rate limits, per minute (README, "Rate limits"), counted in Redis.
    RATE_LIMIT_PER_USER_PER_MINUTE: int = Field(default=600, ge=1)
    RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE: int = Field(default=1200, ge=1)
    # One `service` token carries every customer's calls (entitlements before, usage after).
    RATE_LIMIT_PER_SERVICE_PER_MINUTE: int = Field(default=12_000, ge=1)
    # Invoice PDFs: the first download of each renders it, with Stripe calls and Typst.
    RATE_LIMIT_PDF_PER_USER_PER_MINUTE: int = Field(default=20, ge=1)
    # Routes without a token (the plan catalog), per client IP.
    RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE: int = Field(default=600, ge=1)
    # A Redis that does not answer within this is skipped (fail open), not waited for.
    RATE_LIMIT_REDIS_TIMEOUT_SECONDS: float = Field(default=0.25, gt=0, le=5)

    # Operator console sign-ins (the token form and one-time links), per client IP: a
    # guessed token costs a minute per few tries.
    RATE_LIMIT_CONSOLE_SIGN_IN_PER_IP_PER_MINUTE: int = Field(default=10, ge=1)

    # The operator console at /admin/ (README, "Operator console").
    # Signs its session cookie. Unset: a random key per process outside production (sign-ins
    # end with the process); in production the console is not mounted without it.
    CONSOLE_SESSION_SECRET: SecretStr | None = None
    # A console session ends this long after sign-in, however busy.
    CONSOLE_SESSION_MINUTES: int = Field(default=30, ge=1, le=720)
    # How long a `billing console-link` link can be used (once).
    CONSOLE_LINK_MINUTES: int = Field(default=10, ge=1, le=60)

    # Prometheus metrics (README, "Metrics"): /metrics answers only with this bearer token;
    # unset, it is 404. The worker serves its own on WORKER_METRICS_PORT when both are set.
    METRICS_TOKEN: SecretStr | None = None
    WORKER_METRICS_PORT: int | None = Field(default=None, ge=1, le=65535)

    # Usage alerts: percentages of the included allowance.
    USAGE_ALERT_THRESHOLDS: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [80, 100]
    )

    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)

    # Invoice PDFs: the service's own branding, on the PDFs of customers without their own.
    INVOICE_SELLER_NAME: str = Field(default="Call Center Billing", min_length=1, max_length=200)
    # Address lines separated by "|": "1 Main Street|Springfield, IL 62701|United States".
    INVOICE_SELLER_ADDRESS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    INVOICE_SELLER_TAX_ID: str | None = Field(default=None, max_length=64)
    INVOICE_PRIMARY_COLOR: str = "#1f4e79"
    INVOICE_FOOTER_TEXT: str = Field(default="Thank you for your business.", max_length=500)
    # Printed before Stripe's invoice number ("ACME-" + "A1B2C3-0001").
    INVOICE_NUMBER_PREFIX: str = ""
    # A PNG or SVG file (checked like a customer's logo at start-up); none by default.
    INVOICE_LOGO_PATH: Path | None = None
    # How amounts and dates are written on the PDFs (a CLDR locale: en_US, de_DE, fr_FR...).
    INVOICE_LOCALE: str = "en_US"

    # Billing history: the nightly job archives settled rows older than this many days;
    # unset, it does nothing (`billing archive-billing-records` runs it by hand).
    ARCHIVE_AFTER_DAYS: int | None = Field(default=None, ge=1, le=36_500)

    @field_validator("CORS_ALLOWED_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("FORWARDED_ALLOW_IPS", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [proxy.strip() for proxy in value.split(",") if proxy.strip()]
        return value

    @field_validator("FORWARDED_ALLOW_IPS")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for proxy in value:
            if proxy == "*":
                continue  # every peer: only where nothing but the proxy can reach the service
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {proxy!r}") from None
        return value

    @field_validator("USAGE_ALERT_THRESHOLDS", mode="before")
    @classmethod
    def _split_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("USAGE_ALERT_THRESHOLDS")
    @classmethod
    def _check_thresholds(cls, value: list[int]) -> list[int]:
        if any(threshold <= 0 for threshold in value):
            raise ValueError("usage alert thresholds are positive percentages")
        return sorted(set(value))

    @field_validator("PAYMENT_RETRY_DELAYS", mode="before")
    @classmethod
    def _split_retry_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [parse_duration(part) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_retry_delays(self) -> "Settings":
        delays = self.PAYMENT_RETRY_DELAYS
        if any(delay <= timedelta(0) for delay in delays):
            raise ValueError("PAYMENT_RETRY_DELAYS: every delay must be positive")
        if any(later <= earlier for earlier, later in itertools.pairwise(delays)):
            raise ValueError(
                "PAYMENT_RETRY_DELAYS: delays count from the first failure, so each must be "
                "longer than the one before"
            )
        if delays and len(delays) < self.MAX_PAYMENT_RETRIES:
            raise ValueError(
                f"PAYMENT_RETRY_DELAYS lists {len(delays)} delays for MAX_PAYMENT_RETRIES="
                f"{self.MAX_PAYMENT_RETRIES}: list one per retry, or none to spread them "
                "over GRACE_PERIOD_DAYS"
            )
        if not delays and self.MAX_PAYMENT_RETRIES and self.GRACE_PERIOD_DAYS == 0:
            raise ValueError(
                "MAX_PAYMENT_RETRIES needs PAYMENT_RETRY_DELAYS when GRACE_PERIOD_DAYS is 0"
            )
        return self

    @property
    def grace_period(self) -> timedelta:
        return timedelta(days=self.GRACE_PERIOD_DAYS)

    @property
    def payment_retry_offsets(self) -> list[timedelta]:
        """When each of the `MAX_PAYMENT_RETRIES` retries is due, after the first failure."""
        count = self.MAX_PAYMENT_RETRIES
        if self.PAYMENT_RETRY_DELAYS:
            return list(self.PAYMENT_RETRY_DELAYS[:count])
        return [self.grace_period * attempt / count for attempt in range(1, count + 1)]

    @field_validator("JWT_USER_ID_PATTERN")
    @classmethod
    def _check_user_id_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value

    @field_validator("BILLING_CURRENCY")
    @classmethod
    def _check_currency(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("INVOICE_SELLER_ADDRESS", mode="before")
    @classmethod
    def _split_address(cls, value: object) -> object:
        if isinstance(value, str):
            return [line.strip() for line in value.split("|") if line.strip()]
        return value

    @field_validator("INVOICE_PRIMARY_COLOR")
    @classmethod
    def _check_color(cls, value: str) -> str:
        try:
            return normalize_hex_color(value)
        except BrandingValueError as error:
            raise ValueError(str(error)) from None

    @field_validator("INVOICE_NUMBER_PREFIX")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        try:
            return normalize_number_prefix(value) or ""
        except BrandingValueError as error:
            raise ValueError(str(error)) from None

    @field_validator("INVOICE_LOCALE")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        try:
            return str(Locale.parse(value))
        except (UnknownLocaleError, ValueError, TypeError):
            raise ValueError(f"not a known locale: {value!r}") from None

    @model_validator(mode="after")
    def _check_stripe_mode(self) -> "Settings":
        # A live key in test mode (or the reverse) would charge real cards from a staging box,
        # or silently charge nobody in production: refuse to start.
        mode = "live" if self.STRIPE_LIVE_MODE else "test"
        keys = [("STRIPE_PUBLISHABLE_KEY", self.STRIPE_PUBLISHABLE_KEY)]
        if self.STRIPE_SECRET_KEY is not None:
            keys.append(("STRIPE_SECRET_KEY", self.STRIPE_SECRET_KEY.get_secret_value()))
        for name, key in keys:
            if not key:
                continue
            key_mode = "live" if "_live_" in key else "test" if "_test_" in key else None
            if key_mode is not None and key_mode != mode:
                raise ValueError(
                    f"{name} is a {key_mode} key but STRIPE_LIVE_MODE={self.STRIPE_LIVE_MODE}"
                )
        return self

    @model_validator(mode="after")
    def _check_secrets(self) -> "Settings":
        uses_public_key = not self.JWT_ALGORITHM.startswith("HS")
        if self.ENVIRONMENT == "production":
            for name in (
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
                "METRICS_TOKEN",
                "CONSOLE_SESSION_SECRET",
            ):
                secret: SecretStr | None = getattr(self, name)
                if secret is not None and _is_placeholder(secret.get_secret_value()):
                    raise ValueError(f"{name} is a placeholder")
            if self.CONSOLE_SESSION_SECRET is not None:
                # It signs the console's session cookies: guessed, an operator's is forged.
                _require_real_secret(
                    "CONSOLE_SESSION_SECRET", self.CONSOLE_SESSION_SECRET.get_secret_value()
                )
            if uses_public_key:
                if not self.JWT_PUBLIC_KEY or _is_placeholder(self.JWT_PUBLIC_KEY):
                    raise ValueError(f"JWT_PUBLIC_KEY must be set for {self.JWT_ALGORITHM}")
            else:
                jwt_secret = self.JWT_SECRET.get_secret_value() if self.JWT_SECRET else ""
                _require_real_secret("JWT_SECRET", jwt_secret)
        elif uses_public_key and not self.JWT_PUBLIC_KEY:
            raise ValueError(f"JWT_PUBLIC_KEY must be set for {self.JWT_ALGORITHM}")
        return self

    @model_validator(mode="after")
    def _check_dashboard_webhook(self) -> "Settings":
        url = self.DASHBOARD_WEBHOOK_URL
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("DASHBOARD_WEBHOOK_URL must be an http:// or https:// URL")
        secret = self.DASHBOARD_WEBHOOK_SECRET
        if url is not None and secret is None:
            raise ValueError("DASHBOARD_WEBHOOK_URL needs DASHBOARD_WEBHOOK_SECRET to sign events")
        if self.ENVIRONMENT == "production" and secret is not None:
            _require_real_secret("DASHBOARD_WEBHOOK_SECRET", secret.get_secret_value())
        return self

    @cached_property
    def user_id_pattern(self) -> re.Pattern[str]:
        return re.compile(self.JWT_USER_ID_PATTERN)

    @property
    def jwt_verification_key(self) -> str:
        if self.JWT_ALGORITHM.startswith("HS"):
            if self.JWT_SECRET is None:
                # No built-in fallback: a forgotten secret must stop the API, not open it.
                raise ConfigurationError(
                    "JWT_SECRET is not set (`make run` makes a local one under .data/)"
                )
            return self.JWT_SECRET.get_secret_value()
        assert self.JWT_PUBLIC_KEY is not None
        return self.JWT_PUBLIC_KEY

    @property
    def checkout_success_url(self) -> str:
        """STRIPE_SUCCESS_URL with Stripe's `{CHECKOUT_SESSION_ID}` placeholder, which Stripe
        replaces with the session's id, so the dashboard's page can tell which one ended."""
        url = self.STRIPE_SUCCESS_URL
        if "{CHECKOUT_SESSION_ID}" in url:
            return url
        return f"{url}{'&' if '?' in url else '?'}session_id={{CHECKOUT_SESSION_ID}}"

    @property
    def stripe_webhook_secrets(self) -> list[str]:
        if self.STRIPE_WEBHOOK_SECRET is None:
            return []
        raw = self.STRIPE_WEBHOOK_SECRET.get_secret_value()
        return [secret.strip() for secret in raw.split(",") if secret.strip()]

    @property
    def database_url(self) -> str:
        if not self.DATABASE_URL:
            raise ConfigurationError(
                "DATABASE_URL is not set (`make run` starts an embedded PostgreSQL when it is not)"
            )
        return to_asyncpg_url(self.DATABASE_URL)

    @property
    def redis_url(self) -> str:
        if not self.REDIS_URL:
            raise ConfigurationError(
                "REDIS_URL is not set (`make run` starts an embedded Redis when it is not)"
            )
        return self.REDIS_URL


def to_asyncpg_url(url: str) -> str:
    """Accept the URL forms operators write (postgres://, postgresql://) and use asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ConfigurationError("DATABASE_URL must be a PostgreSQL URL (postgresql://...)")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1.5d`: a non-negative duration (a sign is not accepted)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration such as 1d, 12h, 30m or 90s: {text.strip()!r}")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: float(match.group(1))})


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, without echoing the values (they may be secrets)."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def refuse_to_start(reason: str) -> NoReturn:
    print(f"configuration error: {reason}", file=sys.stderr)
    raise SystemExit(2)


def load_settings() -> Settings:
    """Read the settings, or stop the process with one clear line saying what is wrong."""
    try:
        return Settings()
    except ValidationError as error:
        refuse_to_start(describe_validation_error(error))


@lru_cache
def get_settings() -> Settings:
    return load_settings()
