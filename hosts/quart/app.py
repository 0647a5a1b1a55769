"""The quart host: quart-trio serving devid's route table (hosts/http/api.py)."""

from __future__ import annotations

import logging
from typing import Any, cast

from quart import Request, Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from engine.errors import PayloadTooLarge, ProtocolError
from hosts.core.authority import Authority
from hosts.http.api import build_plain_router, build_router
from hosts.http.routing import HTTPRequest, HTTPResponse, internal_error

from .peercert import peer_certificate

log = logging.getLogger("devid.http")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _to_quart(response: HTTPResponse) -> Response:
    # The headers go in with the body: Response then skips its default Content-Type.
    headers = Headers()
    for name, value in response.headers:
        if name.lower() == "content-type":
            headers[name] = value
        else:
            headers.add(name, value)  # Link may appear several times
    return Response(response.body, status=response.status, headers=headers)


def _current_request() -> Request:
    """The request behind quart's ``request`` proxy: each attribute read through the
    proxy looks the request context up again."""
    return cast(Request, cast(Any, request)._get_current_object())


def create_app(authority: Authority) -> QuartTrio:
    app = QuartTrio("devid")
    router = build_router(authority)
    # Plain HTTP ([server] scep_http_listen, hypercorn's insecure bind) serves SCEP only.
    plain_router = build_plain_router(authority)
    app.config["MAX_CONTENT_LENGTH"] = router.max_body_bytes
    app.config["BODY_TIMEOUT"] = 30

    def _bare_request() -> HTTPRequest:
        """The current request without its body (for refusing it before reading that)."""
        return HTTPRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            base_url=f"{request.scheme}://{request.host}",
            client=request.remote_addr or "",
        )

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        # Raised by quart itself, e.g. a body over MAX_CONTENT_LENGTH.
        status = exc.code or 500
        if status == 413:
            return _to_quart(
                await router.refuse(_bare_request(), PayloadTooLarge(str(exc.description)))
            )
        words = (exc.name or "error").split()
        code = words[0].lower() + "".join(w.capitalize() for w in words[1:])
        body = {"status": status, "error": code, "message": exc.description}
        return _to_quart(HTTPResponse.json(body, status))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _to_quart(internal_error())

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    async def dispatch(path: str) -> Response:
        current = _current_request()
        try:
            router.check_length(current.content_length)
        except ProtocolError as exc:
            return _to_quart(await router.refuse(_bare_request(), exc))
        body = await current.get_data(as_text=False)
        assert isinstance(body, bytes)
        serving = router if current.scheme == "https" else plain_router
        http_request = HTTPRequest(
            method=current.method,
            path=current.path,
            query={k: v for k, v in current.args.items()} if current.query_string else {},
            headers={k.lower(): v for k, v in current.headers.items()},
            body=body,
            peer_certificate=peer_certificate(current.scope),  # type: ignore[arg-type]
            base_url=f"{current.scheme}://{current.host}",
            client=current.remote_addr or "",
        )
        return _to_quart(await serving.dispatch(http_request))

    return app
