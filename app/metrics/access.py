import hmac

from pydantic import SecretStr


def bearer_token_matches(authorization: str | None, token: SecretStr) -> bool:
    """Whether an Authorization header carries exactly `Bearer <token>`, compared in
    constant time (the token guards operational data, so no timing hints)."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.encode(), token.get_secret_value().encode())
