from datetime import datetime

from app.core.schemas import Schema, SuccessResponse


class AccountPublic(Schema):
    id: int
    dashboard_user_id: str
    email: str | None
    name: str | None
    created_at: datetime


class AccountResponse(SuccessResponse):
    account: AccountPublic
