"""Domain errors: a use case refuses with one of these; the web maps it to a status (JSON) or an error page (HTML)."""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be done, with a message for people; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, status: int | None = None, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = message if detail is None else detail  # what the JSON API answers as "detail"
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    """The thing named does not exist (or is not visible to the caller)."""

    status = 404


class Conflict(ServiceError):
    """The state changed, or does not allow the request now."""

    status = 409
