"""Framework-free HTTP for every host: requests, responses, a router, and the one
place where errors become responses.

The quart host and the raw trio/h11 host both translate their own request
objects into :class:`HTTPRequest`, call :meth:`Router.dispatch`, and write the
:class:`HTTPResponse` back, so both serve exactly the same API.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from engine.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedMediaType,
)

from .ratelimit import RateLimited, RateLimiter, retry_after

log = logging.getLogger("devid.http")

JSON = "application/json"


@attrs.frozen
class HTTPRequest:
    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    # Header names in lower case.
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    # The TLS client certificate (DER), when the client presented one.
    peer_certificate: bytes | None = None
    # The URL the client used up to the path, e.g. "https://ca.example:8443".
    base_url: str = ""
    # The client's IP address ("" if unknown): the key of its rate-limit bucket.
    client: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def bearer(self) -> str | None:
        """The credential of an ``Authorization: Bearer ...`` header, if any."""
        header = self.header("authorization") or ""
        return header[7:].strip() or None if header[:7].lower() == "bearer " else None

    def json(self, *, content_types: tuple[str, ...] = (JSON,)) -> Any:
        """The body as JSON; 415 for another media type, 400 if it is not JSON."""
        mimetype = (self.header("content-type") or "").split(";")[0].strip().lower()
        if mimetype and mimetype not in content_types:
            raise UnsupportedMediaType(f"send the request body as {' or '.join(content_types)}")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        except RecursionError:  # e.g. 60 000 nested "[" fit in the size limit
            raise BadRequest("request body is nested too deeply") from None

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body


@attrs.frozen
class HTTPResponse:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(
        cls,
        data: Any,
        status: int = 200,
        *,
        content_type: str = "application/json; charset=utf-8",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> HTTPResponse:
        return cls(status, json.dumps(data).encode(), (("content-type", content_type), *headers))

    @classmethod
    def data(cls, body: bytes | str, content_type: str, status: int = 200) -> HTTPResponse:
        raw = body.encode() if isinstance(body, str) else body
        return cls(status, raw, (("content-type", content_type),))


def error_response(exc: ProtocolError, headers: tuple[tuple[str, str], ...] = ()) -> HTTPResponse:
    """The only translation of errors into responses: JSON, or the protocol's own form
    (an ACME problem document is ``application/problem+json``)."""
    content_type = exc.content_type
    if content_type == "application/json":
        content_type = "application/json; charset=utf-8"
    return HTTPResponse.json(
        exc.to_json(), exc.http_status, content_type=content_type, headers=headers
    )


def internal_error() -> HTTPResponse:
    return HTTPResponse.json({"status": 500, "error": "internal", "message": "internal error"}, 500)


Handler = Callable[..., Awaitable[HTTPResponse]]
Refuser = Callable[[HTTPRequest, ProtocolError], Awaitable[HTTPResponse]]
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class Access(enum.Enum):
    """What a route asks of a client, for the rate limit (hosts/http/ratelimit.py)."""

    #: A credential (token, client certificate, signed JWS): served while the client's
    #: bucket has a token, without taking one, unless refused for the credential (401/403).
    CREDENTIAL = "credential"
    #: Nothing: every request takes a token.
    ANONYMOUS = "anonymous"
    #: Never limited (``/health``, for monitoring).
    UNLIMITED = "unlimited"


@attrs.frozen
class Route:
    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str]
    access: Access = Access.CREDENTIAL


def _compile(pattern: str) -> re.Pattern[str]:
    out = "^"
    pos = 0
    for match in _PARAM.finditer(pattern):
        out += re.escape(pattern[pos : match.start()])
        out += f"(?P<{match.group(1)}>.+?)" if match.group(2) else f"(?P<{match.group(1)}>[^/]+)"
        pos = match.end()
    return re.compile(out + re.escape(pattern[pos:]) + "$")


class Router:
    """Routes ``METHOD /path/{param}`` (``{param:path}`` may contain '/') to async handlers."""

    def __init__(self, max_body_bytes: int, *, limiter: RateLimiter | None = None) -> None:
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter
        self._routes: list[Route] = []
        self._refusers: list[tuple[str, Refuser]] = []

    def add(
        self, method: str, pattern: str, handler: Handler, *, access: Access = Access.CREDENTIAL
    ) -> None:
        self._routes.append(Route(method.upper(), pattern, handler, _compile(pattern), access))

    def route(
        self, method: str, pattern: str, *, access: Access = Access.CREDENTIAL
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(method, pattern, handler, access=access)
            return handler

        return decorate

    def on_refusal(self, prefix: str, refuser: Refuser) -> None:
        """Answer refusals under *prefix* (no such path, wrong method, body too large) with
        *refuser* instead of the default JSON error: a protocol with its own error form
        (ACME: problem documents with a Replay-Nonce) stays in that form."""
        self._refusers.append((prefix, refuser))

    async def refuse(self, request: HTTPRequest, exc: ProtocolError) -> HTTPResponse:
        """The response to a request refused before (or instead of) its handler.

        Hosts call this too, for what they refuse before building a request (an
        announced body over the limit)."""
        for prefix, refuser in self._refusers:
            if request.path.startswith(prefix):
                return await refuser(request, exc)
        return error_response(exc)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        route, params = self._find(method, path)
        return route.handler, params

    def _find(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: set[str] = set()
        for route in self._routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, found.groupdict()
            allowed.add(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed here; use {', '.join(sorted(allowed))}"
            )
        raise NotFound(f"no such resource: {path}")

    def allowed_methods(self, path: str) -> set[str]:
        return {r.method for r in self._routes if r.regex.match(path)}

    def check_length(self, length: int | None) -> None:
        """Refuse an announced body over the limit before reading it."""
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(f"request body exceeds {self.max_body_bytes} bytes")

    async def dispatch(self, request: HTTPRequest) -> HTTPResponse:
        """Answer *request*. With a rate limit, requests to anonymous routes (and to no
        route at all) take a token from the client's bucket, a 401 or 403 takes one
        after the fact, and while the bucket is empty every request but those to
        unlimited routes gets 429 (hosts/http/ratelimit.py)."""
        try:
            if len(request.body) > self.max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds {self.max_body_bytes} bytes")
            route, params = self._find(request.method, request.path)
        except ProtocolError as exc:
            response = await self._limit(request, Access.ANONYMOUS) or await self.refuse(
                request, exc
            )
        else:
            limited = await self._limit(request, route.access)
            if limited is not None:
                response = limited
            else:
                response = await self._handle(request, route.handler, params)
                if response.status in (401, 403) and route.access is Access.CREDENTIAL:
                    self._charge(request)
        if request.method == "HEAD":
            response = attrs.evolve(response, body=b"")
        return response

    async def _limit(self, request: HTTPRequest, access: Access) -> HTTPResponse | None:
        """The 429 for *request* if its client is over the rate limit, else None."""
        if self.limiter is None or not request.client or access is Access.UNLIMITED:
            return None
        if access is Access.ANONYMOUS:
            wait = self.limiter.take(request.client)
        else:
            wait = self.limiter.wait(request.client)
        if wait <= 0:
            return None
        seconds = retry_after(wait)
        refusal = RateLimited(
            f"too many requests from this address; try again in {seconds} s", seconds
        )
        response = await self.refuse(request, refusal)
        return attrs.evolve(response, headers=(*response.headers, ("retry-after", str(seconds))))

    def _charge(self, request: HTTPRequest) -> None:
        """A request refused for its credential counts as an anonymous one."""
        if self.limiter is not None and request.client:
            self.limiter.take(request.client)

    async def _handle(
        self, request: HTTPRequest, handler: Handler, params: dict[str, str]
    ) -> HTTPResponse:
        try:
            response = await handler(request, **params)
        except ProtocolError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = internal_error()
        return response
