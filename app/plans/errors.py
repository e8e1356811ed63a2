from app.core.errors import Conflict, InvalidRequest, NotFound


class PlanNotFound(NotFound):
    code = "plan_not_found"
    message = "No such plan."


class PlanExists(Conflict):
    code = "plan_exists"
    message = "A plan with that slug or name exists."


class AddOnNotFound(NotFound):
    code = "add_on_not_found"
    message = "No such add-on."


class AddOnExists(Conflict):
    code = "add_on_exists"
    message = "An add-on with that slug or name exists."


class CurrencyNotSupported(InvalidRequest):
    code = "currency_not_supported"
    message = "This deployment bills in one currency (BILLING_CURRENCY)."
