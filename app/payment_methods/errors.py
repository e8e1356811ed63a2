from app.core.errors import Conflict


class LastPaymentMethod(Conflict):
    code = "last_payment_method"
    message = "This is the only card of a live subscription; add another card first."
