"""Whose account a request is about: the caller's own, or the one a `service` token names.

Shared by every domain that acts on a customer named by a dashboard user id (usage, alerts).
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from app.core.auth import CurrentPrincipal, Principal
from app.core.errors import NotFound


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    message = "No billing account for that customer id."


@dataclass(frozen=True, slots=True)
class AccountReference:
    # The dashboard user id (customers.dashboard_user_id), as SPEC §4 names customers.
    dashboard_user_id: str
    # Named by a `service` token: an unknown account is a 404 rather than an empty one.
    by_service: bool


def account_reference(principal: Principal, customer_id: str | None) -> AccountReference:
    """The account a request acts on. A service token may name any customer; anyone else
    only themselves, and naming another customer is a 404 (SPEC §4: never a 403)."""
    if principal.is_service:
        return AccountReference(customer_id or principal.user_id, by_service=True)
    if customer_id is not None and customer_id != principal.user_id:
        raise CustomerNotFound()
    return AccountReference(principal.user_id, by_service=False)


async def get_account_reference(
    principal: CurrentPrincipal,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            # No NUL, which PostgreSQL text cannot hold: a 422 here, not a database error.
            pattern=r"^[^\x00]+$",
            description="A service token's customer (the dashboard user id).",
        ),
    ] = None,
) -> AccountReference:
    return account_reference(principal, customer_id)


TargetAccount = Annotated[AccountReference, Depends(get_account_reference)]
