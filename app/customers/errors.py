from app.core.errors import NotFound


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    message = "No billing account for that customer id."
