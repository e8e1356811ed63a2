from app.core.errors import InvalidRequest, NotFound


class AlertNotFound(NotFound):
    code = "alert_not_found"
    message = "No such alert."


class InvalidAlertCursor(InvalidRequest):
    code = "invalid_cursor"
    message = "The cursor is not one this API returned; start again without it."
