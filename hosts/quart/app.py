"""Routes of the quart host. Errors become JSON here and nowhere else."""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from engine.errors import BadRequest, PayloadTooLarge, ProtocolError, UnsupportedMediaType
from hosts.core.authority import Authority

from .admin import register_admin_api
from .peercert import peer_certificate

log = logging.getLogger("devid.http")


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json; charset=utf-8")


def _error(exc: ProtocolError) -> Response:
    return _json(exc.to_json(), exc.status)


async def _json_body(max_bytes: int) -> dict[str, Any]:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json":
        raise UnsupportedMediaType("send the request body as application/json")
    raw = await request.get_data(as_text=False)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:  # e.g. 60 000 nested "[" fit in the size limit
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def create_app(authority: Authority) -> QuartTrio:
    app = QuartTrio("devid")
    max_body = authority.config.server.max_body_bytes
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["BODY_TIMEOUT"] = 30

    @app.errorhandler(ProtocolError)
    async def protocol_error(exc: ProtocolError) -> Response:
        return _error(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        words = (exc.name or "error").split()
        code = words[0].lower() + "".join(w.capitalize() for w in words[1:])
        return _json({"status": status, "error": code, "message": exc.description}, status)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json({"status": 500, "error": "internal", "message": "internal error"}, 500)

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/roots.pem")
    async def roots() -> Response:
        return Response(authority.root_pem, content_type="application/x-pem-file")

    @app.get("/root/<sha256>")
    async def root(sha256: str) -> Response:
        return _json({"ca": authority.root_by_fingerprint(sha256)})

    @app.get("/provisioners")
    async def provisioners() -> Response:
        return _json({"provisioners": authority.provisioners_view(), "nextCursor": ""})

    @app.post("/1.0/sign")
    async def sign() -> Response:
        body = await _json_body(max_body)
        return _json(await trio.to_thread.run_sync(authority.sign, body), 201)

    @app.post("/1.0/renew")
    async def renew() -> Response:
        peer = peer_certificate(request.scope)  # type: ignore[arg-type]
        return _json(await trio.to_thread.run_sync(authority.renew, peer), 201)

    @app.post("/1.0/revoke")
    async def revoke() -> Response:
        body = await _json_body(max_body)
        peer = peer_certificate(request.scope)  # type: ignore[arg-type]
        return _json(await trio.to_thread.run_sync(authority.revoke, body, peer))

    @app.post("/attest")
    async def attest() -> Response:
        body = await _json_body(max_body)
        return _json(await trio.to_thread.run_sync(authority.attest, body))

    @app.post("/secret")
    async def secret() -> Response:
        body = await _json_body(max_body)
        return _json(await trio.to_thread.run_sync(authority.activate, body))

    @app.get("/crl")
    @app.get("/crl/<issuer>")
    async def crl(issuer: str = "agent") -> Response:
        der = await trio.to_thread.run_sync(authority.crl, issuer)
        if request.args.get("format") == "pem":
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            text = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
            return Response(text, content_type="application/x-pem-file")
        return Response(der, content_type="application/pkix-crl")

    register_admin_api(app, authority, _json, lambda: _json_body(max_body))
    return app
