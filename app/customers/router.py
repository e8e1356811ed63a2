from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.customers.dependencies import CurrentCustomer
from app.customers.schemas import AccountPublic, AccountResponse

router = SlashTolerantRouter(tags=["account"])


@router.get(
    "/account/",
    response_model=AccountResponse,
    responses=error_responses(Unauthorized),
    summary="The caller's billing account",
)
async def get_account(customer: CurrentCustomer) -> AccountResponse:
    return AccountResponse(account=AccountPublic.model_validate(customer))
