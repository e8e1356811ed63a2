from app.core.errors import Conflict, NotFound


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    message = "No notification with that id."


class NotificationNotDead(Conflict):
    code = "notification_not_dead"
    message = (
        "Only a dead notification can be resent; this one is still being delivered or was sent."
    )
