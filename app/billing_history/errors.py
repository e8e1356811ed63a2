from app.core.errors import InvalidRequest


class InvalidCursor(InvalidRequest):
    code = "invalid_cursor"
    message = "The cursor is not one this API returned; start again without it."
