"""What an ACME client's own servers answer when devid validates a challenge
(hosts/validation/): the tls-alpn-01 validation certificate, the
http-01 response (status line, headers, body, through h11) and a redirect's
Location. Any account holder controls these, and an account costs nothing where
no external account binding is required.

The first byte chooses: 0 the tls-alpn-01 certificate for a DNS name, 1 for an
IP address, 2 a redirect's Location, 3 the HTTP response bytes; the rest is that
input.
"""

from __future__ import annotations

import ipaddress

import trio
import trio.testing

from fuzz.harness import attempt, text
from hosts.validation import ValidationConfig, http01, tlsalpn01
from hosts.validation.trace import Trace

HOST = "device.example"
ADDRESS = ipaddress.ip_address("192.0.2.7")
KEY_AUTHORIZATION = "dG9rZW4.dGh1bWJwcmludA"
TOKEN = "dG9rZW4"
CURRENT = f"http://{HOST}/.well-known/acme-challenge/{TOKEN}"
CONFIG = ValidationConfig()


def _certificate(der: bytes, host: str | ipaddress.IPv4Address) -> None:
    trace = Trace("tls-alpn-01")
    tlsalpn01._check_acme_certificate(der, host, KEY_AUTHORIZATION, "the target", trace)


def _location(location: str) -> None:
    trace = Trace("http-01")
    http01._redirect(CURRENT, location, CONFIG, trace, "the target redirected")


class _Peer(trio.abc.Stream):
    """The client's server: answers with the input, whatever is sent to it."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        return None

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = max_bytes or 16384
        chunk, self._answer = self._answer[:size], self._answer[size:]
        return chunk

    async def aclose(self) -> None:
        return None


def _response(answer: bytes) -> None:
    """The exchange as validation runs it; an invalid answer is refused as there."""
    import h11

    trace = Trace("http-01")
    try:
        response = trio.run(http01._exchange, _Peer(answer), HOST, "/")
    except h11.ProtocolError:
        return  # _fetch answers "the answer is not valid HTTP/1.1"
    location = response.headers.get("location")
    if response.status in http01.REDIRECT_STATUSES and location:
        http01._redirect(CURRENT, location, CONFIG, trace, "the target redirected")
    response.body.rstrip() == KEY_AUTHORIZATION.encode()  # noqa: B015 (the check http-01 makes)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, rest = data[0] % 4, data[1:]
    if selector == 0:
        attempt(_certificate, rest, HOST)
    elif selector == 1:
        attempt(_certificate, rest, ADDRESS)
    elif selector == 2:
        attempt(_location, text(rest))
    else:
        attempt(_response, rest)
