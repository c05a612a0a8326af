"""The response envelope of every ``/api/v1`` route and the mapping of errors to HTTP statuses.

``{"success": bool, "data": …, "error": {"code", "message", "details"} | null, "metadata": {…} | null}``
(docs/CONTRACT.md §4). Handlers return data or raise; nothing else writes a response body.
"""

from __future__ import annotations

import logging
import typing

import falcon
import msgspec
import orjson

from rtsig.errors import ConfigInvalid, ConfigNotFound, StoreUnavailable, VersionConflict
from web.types import Envelope, ErrorCode

log = logging.getLogger(__name__)

ERROR_CODES: tuple[str, ...] = typing.get_args(ErrorCode)


class ApiError(Exception):
    """An error response: HTTP status, one of :data:`ERROR_CODES`, message and details."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def bad_request(message: str, details: dict | None = None) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, details)


def invalid(message: str, details: dict) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", message, details)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def from_exception(exc: Exception) -> ApiError:
    """The API error of a config-service exception (anything else is a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConfigNotFound):
        return not_found(str(exc))
    if isinstance(exc, ConfigInvalid):
        return invalid(str(exc), exc.errors)
    if isinstance(exc, VersionConflict):
        return ApiError(409, "CONFLICT", str(exc), {"current_version": exc.current_version})
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "UNAVAILABLE", str(exc), {}, {"Retry-After": "5"})
    if isinstance(exc, falcon.HTTPError):
        code = {404: "NOT_FOUND", 405: "VALIDATION_ERROR", 401: "UNAUTHORIZED",
                429: "RATE_LIMITED"}.get(exc.status_code, "VALIDATION_ERROR" if exc.status_code < 500
                                         else "INTERNAL_ERROR")
        return ApiError(exc.status_code, code, exc.title or "error",
                        {"description": exc.description} if exc.description else {})
    log.exception("unhandled error")
    return ApiError(500, "INTERNAL_ERROR", "internal error; see the service log")


def write(resp: falcon.Response, data, status: int = 200, metadata: dict | None = None) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(Envelope(success=True, data=data, error=None, metadata=metadata))


def write_error(resp: falcon.Response, err: ApiError, bare: bool = False) -> None:
    """The error envelope, or only ``{"error": …}`` for the bare (market metrics) routes."""
    resp.status = err.status
    resp.content_type = falcon.MEDIA_JSON
    for name, value in err.headers.items():
        resp.set_header(name, value)
    error = {"code": err.code, "message": err.message, "details": err.details}
    resp.data = orjson.dumps({"error": error} if bare else
                             {"success": False, "data": None, "error": error, "metadata": None})
