"""JSON request bodies (hosts/http/routing.py ``HTTPRequest.json``) and the fields
``POST /1.0/sign`` and ``POST /1.0/revoke`` read before any credential is checked:
the times, the serial, the reason code, the CSR and the token's claims."""

from __future__ import annotations

from typing import Any

from engine.csr import parse_csr
from engine.jose import parse_compact
from fuzz.harness import NOW, attempt
from hosts.http.routing import HTTPRequest
from hosts.http.wire import parse_serial, string_field

CONTENT_TYPES = ("application/json", "application/json; charset=utf-8", "", "text/plain")


def _sign_fields(body: dict[str, Any]) -> None:
    from engine.durations import parse_time_or_duration

    csr = string_field(body, "csr")
    token = string_field(body, "ott")
    assert csr is not None and token is not None
    parse_time_or_duration(body.get("notBefore"), NOW)
    parse_time_or_duration(body.get("notAfter"), NOW)
    parse_csr(csr)
    parse_compact(token).claims()


def _revoke_fields(body: dict[str, Any]) -> None:
    parse_serial(body.get("serial"))
    string_field(body, "ott", required=False)
    string_field(body, "reason", required=False)


def test_one_input(data: bytes) -> None:
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)] if data else ""
    request = HTTPRequest(
        method="POST",
        path="/1.0/sign",
        headers={"content-type": content_type} if content_type else {},
        body=data[1:],
    )
    attempt(request.json)
    body = attempt(request.json_object)
    if body is not None:
        attempt(_sign_fields, body)
        attempt(_revoke_fields, body)
