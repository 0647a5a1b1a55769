"""One error tree for the whole engine.

Every error a peer can cause is a :class:`ProtocolError` that carries what the
host must send back (an HTTP status and a short machine-readable code).
Hosts translate these in exactly one place; anything else that escapes is a
bug and is reported as a generic 500 without details.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DevidError(Exception):
    """Base of every error raised by devid code."""


class ConfigurationError(DevidError):
    """The operator's configuration or data directory is unusable."""


class ProtocolError(DevidError):
    """A peer sent something we refuse; carries the response to give."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "badRequest"
    content_type: ClassVar[str] = "application/json"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def http_status(self) -> int:
        """The status to answer with (protocol errors may choose it per instance)."""
        return self.status

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.code, "message": self.detail}


class BadRequest(ProtocolError):
    status = 400
    code = "badRequest"


class Unauthorized(ProtocolError):
    """The credential (token, certificate, signature) is missing or invalid."""

    status = 401
    code = "unauthorized"


class Forbidden(ProtocolError):
    """The credential is valid but does not allow this request."""

    status = 403
    code = "forbidden"


class NotFound(ProtocolError):
    status = 404
    code = "notFound"


class MethodNotAllowed(ProtocolError):
    status = 405
    code = "methodNotAllowed"


class Conflict(ProtocolError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ProtocolError):
    status = 413
    code = "payloadTooLarge"


class UnsupportedMediaType(ProtocolError):
    status = 415
    code = "unsupportedMediaType"


class ServiceUnavailable(ProtocolError):
    """Something the request needs from elsewhere (an OpenID provider's keys) cannot be
    had now; the same request may succeed later."""

    status = 503
    code = "serviceUnavailable"
