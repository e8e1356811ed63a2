"""Dependencies on what the app holds for its lifetime: settings and the clock."""

from typing import Annotated

from fastapi import Depends, Request

from app.core.clock import Clock
from app.core.config import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
