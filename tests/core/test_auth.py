"""Bearer tokens as the dashboard (SimpleJWT) and its services send them."""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jose import jwt
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.auth import decode_access_token, issue_access_token
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.main import create_app
from app.models import Customer
from tests.conftest import TEST_JWT_SECRET, TokenFactory, bearer, make_settings

ACCOUNT = "/subscriptions/api/account/"


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _signed(claims: dict[str, Any], raw_number: str, claim: str = "exp") -> str:
    """An HS256 token whose `claim` is written as `raw_number` verbatim in the JSON, as an
    attacker with the key (or a buggy issuer) could write it."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    body = json.dumps(claims)[:-1] + f', "{claim}": {raw_number}}}'
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(body.encode())
    signature = hmac.new(TEST_JWT_SECRET.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + part(signature)).decode()


async def _assert_refused(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(ACCOUNT, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_a_simplejwt_access_token_is_accepted_and_creates_the_account(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    # Exactly the claims djangorestframework-simplejwt 5 puts in an access token.
    token = make_token("42")

    response = await client.get(ACCOUNT, headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json()["account"]["dashboard_user_id"] == "42"
    customers = (await session.scalars(select(Customer))).all()
    assert [customer.dashboard_user_id for customer in customers] == ["42"]


async def test_numeric_user_id_and_sub_fallback_name_the_same_account(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    by_number = await client.get(ACCOUNT, headers=bearer(make_token(7)))
    by_sub = await client.get(ACCOUNT, headers=bearer(make_token(None, sub="7")))

    assert by_number.status_code == by_sub.status_code == 200
    assert by_number.json()["account"]["id"] == by_sub.json()["account"]["id"]
    assert len((await session.scalars(select(Customer))).all()) == 1


async def test_email_and_name_claims_fill_the_account(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    await client.get(ACCOUNT, headers=bearer(make_token("9")))
    response = await client.get(
        ACCOUNT, headers=bearer(make_token("9", email="ops@acme.test", name="Acme Ops"))
    )
    assert response.json()["account"]["email"] == "ops@acme.test"
    assert response.json()["account"]["name"] == "Acme Ops"


async def test_concurrent_first_calls_create_one_account(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    import asyncio

    token = make_token("77")
    responses = await asyncio.gather(
        *(client.get(ACCOUNT, headers=bearer(token)) for _ in range(10))
    )

    assert {response.status_code for response in responses} == {200}
    customers = (await session.scalars(select(Customer))).all()
    assert len(customers) == 1


async def test_missing_or_non_bearer_authorization_is_401(client: httpx.AsyncClient) -> None:
    await _assert_refused(client, {})
    await _assert_refused(client, {"Authorization": "Basic dXNlcjpwYXNz"})
    await _assert_refused(client, {"Authorization": "Bearer"})


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not_yet_valid",
        "no_exp",
        "malformed",
        "wrong_key",
        "alg_none",
        "refresh",
        "no_token_type",
        "no_user",
        "boolean_user",
        "exp_infinite",
        "exp_nan",
        "exp_fraction",
        "exp_string",
        "exp_beyond_year_9999",
        "nbf_infinite",
        "user_id_not_an_integer",
        "user_id_with_a_quote",
        "user_id_with_leading_zero",
        "user_id_too_long",
    ],
)
async def test_bad_tokens_are_401(
    case: str, client: httpx.AsyncClient, make_token: TokenFactory, clock: FrozenClock
) -> None:
    now = int(clock.now().timestamp())
    tokens: dict[str, Callable[[], str]] = {
        # Past the 30 s leeway.
        "expired": lambda: make_token(lifetime=timedelta(seconds=-31)),
        "not_yet_valid": lambda: make_token(nbf=now + 31),
        "no_exp": lambda: make_token(exp=None),
        "malformed": lambda: "not.a.jwt",
        "wrong_key": lambda: make_token(key="another-secret-another-secret-0123456789"),
        "alg_none": lambda: _unsigned({"user_id": "42", "exp": now + 300}),
        "refresh": lambda: make_token(token_type="refresh"),
        "no_token_type": lambda: make_token(token_type=None),
        "no_user": lambda: make_token(None),
        "boolean_user": lambda: make_token(True),
        # JSON's 1e400 decodes to infinity: such a token would never expire.
        "exp_infinite": lambda: _signed({"user_id": 42, "token_type": "access"}, "1e400"),
        "exp_nan": lambda: _signed({"user_id": 42, "token_type": "access"}, "NaN"),
        "exp_fraction": lambda: make_token(exp=now + 300.5),
        "exp_string": lambda: make_token(exp=str(now + 300)),
        "exp_beyond_year_9999": lambda: make_token(exp=10**20),
        "nbf_infinite": lambda: _signed(
            {"user_id": 42, "token_type": "access", "exp": now + 300}, "-1e400", claim="nbf"
        ),
        "user_id_not_an_integer": lambda: make_token("telephony"),
        "user_id_with_a_quote": lambda: make_token("42' OR metadata['x']:'1"),
        "user_id_with_leading_zero": lambda: make_token("042"),
        "user_id_too_long": lambda: make_token("1" * 30),
    }
    await _assert_refused(client, bearer(tokens[case]()))


async def test_clock_skew_within_the_leeway_is_tolerated(
    client: httpx.AsyncClient, make_token: TokenFactory, clock: FrozenClock
) -> None:
    now = int(clock.now().timestamp())
    just_expired = make_token(lifetime=timedelta(seconds=-29))
    almost_valid = make_token(nbf=now + 29)

    assert (await client.get(ACCOUNT, headers=bearer(just_expired))).status_code == 200
    assert (await client.get(ACCOUNT, headers=bearer(almost_valid))).status_code == 200


async def test_expiry_follows_the_injected_clock(
    client: httpx.AsyncClient, make_token: TokenFactory, clock: FrozenClock
) -> None:
    token = make_token(lifetime=timedelta(minutes=5))
    assert (await client.get(ACCOUNT, headers=bearer(token))).status_code == 200

    clock.advance(timedelta(minutes=5, seconds=31))

    await _assert_refused(client, bearer(token))


async def _client_for(settings: Settings, clock: FrozenClock) -> tuple[FastAPI, httpx.AsyncClient]:
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    return app, httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_rs256_accepts_its_tokens_and_refuses_hs256_signed_with_the_public_key(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = make_settings(
        database_url, redis_url, JWT_ALGORITHM="RS256", JWT_PUBLIC_KEY=public_pem
    )
    claims = {"user_id": "5", "exp": int(clock.now().timestamp()) + 300, "token_type": "access"}
    good = jwt.encode(claims, private_pem, algorithm="RS256")
    # The algorithm-confusion attack: HMAC with the (public) key as the secret.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem.encode(), header + b"." + payload, hashlib.sha256).digest()
    ).rstrip(b"=")
    forged = b".".join([header, payload, signature]).decode()

    app, client = await _client_for(settings, clock)
    async with app.router.lifespan_context(app), client:
        assert (await client.get(ACCOUNT, headers=bearer(good))).status_code == 200
        await _assert_refused(client, bearer(forged))
        hs256 = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
        await _assert_refused(client, bearer(hs256))


async def test_audience_issuer_and_user_id_claim_when_configured(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(
        database_url,
        redis_url,
        JWT_AUDIENCE="billing",
        JWT_ISSUER="dashboard",
        JWT_USER_ID_CLAIM="uid",
    )
    exp = int(clock.now().timestamp()) + 300

    def token(**claims: Any) -> str:
        return jwt.encode(
            {"exp": exp, "token_type": "access", **claims}, TEST_JWT_SECRET, algorithm="HS256"
        )

    app, client = await _client_for(settings, clock)
    async with app.router.lifespan_context(app), client:
        ok = await client.get(ACCOUNT, headers=bearer(token(uid=3, aud="billing", iss="dashboard")))
        assert ok.status_code == 200
        assert ok.json()["account"]["dashboard_user_id"] == "3"
        await _assert_refused(client, bearer(token(uid=3, aud="other", iss="dashboard")))
        await _assert_refused(client, bearer(token(uid=3, iss="dashboard")))
        await _assert_refused(client, bearer(token(uid=3, aud="billing", iss="someone")))


@pytest.mark.parametrize(
    "email",
    [
        "a@acme.test\r\nBcc: everyone@acme.test",
        "Ops <ops@acme.test>",
        "ops@acme.test, cfo@acme.test",
        "no-at-sign",
        "two@at@acme.test",
    ],
)
async def test_an_email_claim_that_is_not_one_plain_address_is_ignored(
    client: httpx.AsyncClient, make_token: TokenFactory, email: str
) -> None:
    response = await client.get(ACCOUNT, headers=bearer(make_token("8", email=email)))

    assert response.status_code == 200
    assert response.json()["account"]["email"] is None


async def test_claims_too_long_to_store_are_ignored_not_fatal(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    token = make_token("8", email="x" * 400 + "@acme.test", name="n\u0000")

    response = await client.get(ACCOUNT, headers=bearer(token))

    assert response.status_code == 200
    assert response.json()["account"]["email"] is None


def test_api_refuses_to_start_without_a_jwt_secret(
    database_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(database_url, redis_url, JWT_SECRET=None)

    with pytest.raises(SystemExit):
        create_app(settings)

    assert capsys.readouterr().err.strip().startswith("configuration error: JWT_SECRET")


async def test_a_wider_user_id_pattern_admits_the_dashboards_other_ids(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(database_url, redis_url, JWT_USER_ID_PATTERN="[0-9a-f]{32}")
    exp = int(clock.now().timestamp()) + 300

    def token(user_id: str) -> str:
        claims = {"exp": exp, "token_type": "access", "user_id": user_id}
        return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")

    app, client = await _client_for(settings, clock)
    async with app.router.lifespan_context(app), client:
        uuid_id = "4f1c1b2a9d8e4f0a8b7c6d5e4f3a2b1c"
        ok = await client.get(ACCOUNT, headers=bearer(token(uuid_id)))
        assert ok.status_code == 200, ok.text
        assert ok.json()["account"]["dashboard_user_id"] == uuid_id
        await _assert_refused(client, bearer(token("42")))


def test_a_user_id_pattern_that_is_no_regular_expression_is_refused(
    database_url: str, redis_url: str
) -> None:
    with pytest.raises(ValidationError, match="JWT_USER_ID_PATTERN"):
        make_settings(database_url, redis_url, JWT_USER_ID_PATTERN="[0-9")


def test_a_cached_token_is_checked_against_the_clock_on_every_use(settings: Settings) -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = issue_access_token(
        settings, user_id="42", roles=[], now=issued, lifetime=timedelta(minutes=5)
    )
    leeway = timedelta(seconds=settings.JWT_LEEWAY_SECONDS)

    assert decode_access_token(token, settings, issued).user_id == "42"
    # Verified once and cached; a later use past exp (and the leeway) is refused all the same.
    expired_at = issued + timedelta(minutes=5) + leeway + timedelta(seconds=1)
    with pytest.raises(Unauthorized, match="expired"):
        decode_access_token(token, settings, expired_at)
    other = settings.model_copy(update={"JWT_AUDIENCE": "another-service"})
    with pytest.raises(Unauthorized):
        # Other settings verify afresh: the cache never answers for them.
        decode_access_token(token, other, issued)
