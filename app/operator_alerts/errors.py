from app.core.errors import AppError


class OperatorAlertNotFound(AppError):
    status_code = 404
    code = "operator_alert_not_found"
    message = "No such operator alert."
