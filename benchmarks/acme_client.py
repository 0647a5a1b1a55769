"""The ACME side of the benchmark: one small RFC 8555 client and one http-01 responder.

The same code drives devid and pebble, so what differs between their figures
is the server. It is built from the load generator's pieces (h11 over trio's
TLS streams, :class:`benchmarks.loadgen.Connection`), so that on a 2-core
machine the client takes as little CPU from the servers as Python allows:
``agent.acme.ACMEClient`` (httpx, blocking, one thread per account) costs
several times as much per request.

One :class:`AcmeClient` is one account on one keep-alive HTTPS connection.
Every request is a flattened JWS signed ES256 by the account's P-256 key
(``jwk`` for newAccount, ``kid`` after it); every response's ``Replay-Nonce``
is kept for the next request, and a ``badNonce`` refusal is retried once with
the nonce it carried (counted: pebble's random nonce rejection is switched
off for the benchmark, so there should be none).

:meth:`AcmeClient.complete_order` does one whole order and times each step:

``newOrder``
    POST newOrder for one ``dns`` identifier (201, Location);
``authorization``
    POST-as-GET the authorization, pick its http-01 challenge, hand the key
    authorization to the responder;
``challenge``
    POST ``{}`` to the challenge (the server starts validating);
``validation``
    wait until the responder has served the token to the server's validator,
    then POST-as-GET the authorization until it is ``valid`` (the first poll
    at once, then after 2, 4, 8 ... ms, at most 50 ms apart);
``finalize``
    POST finalize with the order's CSR (a fresh key, made before the clock
    started); if the order is not ``valid`` yet, poll it the same way;
``download``
    POST-as-GET the certificate (``application/pem-certificate-chain``).

The client does not honour ``Retry-After`` (devid sends 1 s on a processing
challenge): it polls both servers on the same short schedule instead, so that
the figure is the servers' work, not a sleep the client chose. Every poll is a
signed request the server must verify; the polls per order are reported, and
so are the ``Retry-After`` values each server sent, per step (what a client
that honours them, as certbot and lego do, would have waited).

After the download (outside the order's timer) the chain is checked: the
leaf certifies the CSR's key, names the ordered name and is signed by the
next certificate.

:class:`Http01Responder` serves ``/.well-known/acme-challenge/TOKEN`` on one
loopback port for every server (devid's ``--acme-http01-port``, pebble's
``httpPort``): HTTP/1.1 through h11, one request per connection, the answer
only for the token's own name (the Host header), and a :class:`trio.Event` per
token set when a validator fetched it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import h11
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine.jose import b64url_encode, create_signature, jwk_from_public_key, jwk_thumbprint

from .common import BenchmarkError
from .loadgen import Connection, ConnectionBroken, Response

JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
ACME_ERROR = "urn:ietf:params:acme:error:"
CHALLENGE_PATH = "/.well-known/acme-challenge/"

#: The steps of one order, in order (the keys of :attr:`OrderResult.seconds`).
STEPS: tuple[str, ...] = (
    "newOrder",
    "authorization",
    "challenge",
    "validation",
    "finalize",
    "download",
)
#: Polling: the first poll at once, then after 2, 4, 8 ... ms, never more than 50 ms apart.
FIRST_POLL_DELAY_S = 0.002
MAX_POLL_DELAY_S = 0.05
#: How long to wait for the validator to fetch the token before polling anyway.
VALIDATION_WAIT_S = 20.0
#: Give up on an authorization or order that has not settled after this long.
POLL_TIMEOUT_S = 30.0


class AcmeFailure(BenchmarkError):
    """The server refused a request, or an order did not end with a good certificate."""


@dataclass(frozen=True)
class OrderPlan:
    """One order prepared before the clock starts: the name and its CSR (a fresh key)."""

    name: str
    csr_der: bytes
    public_key_der: bytes


def make_order_plans(count: int, prefix: str, domain: str) -> list[OrderPlan]:
    """*count* orders for ``<prefix>-<i>.<domain>``, each with a fresh P-256 key and CSR."""
    plans = []
    for i in range(count):
        name = f"{prefix}-{i:05d}.{domain}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        plans.append(
            OrderPlan(
                name=name,
                csr_der=csr.public_bytes(Encoding.DER),
                public_key_der=key.public_key().public_bytes(
                    Encoding.DER, PublicFormat.SubjectPublicKeyInfo
                ),
            )
        )
    return plans


@dataclass
class OrderResult:
    """The seconds each step of one order took, and how many polls it needed; with a
    server CPU meter (see :meth:`AcmeClient.complete_order`) also the server's CPU
    seconds in each step."""

    seconds: dict[str, float] = field(default_factory=dict)
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    authorization_polls: int = 0
    order_polls: int = 0
    nonce_retries: int = 0
    chain_pem: bytes = b""

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def polls(self) -> int:
        return self.authorization_polls + self.order_polls


def _problem(response: Response) -> str:
    """A one-line account of a refusal (the problem document's type and detail)."""
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        kind = str(data["type"]).removeprefix(ACME_ERROR)
        detail = " ".join(str(data.get("detail", "")).split())[:300]
        return f"HTTP {response.status} {kind}: {detail}"
    return f"HTTP {response.status}: {response.body[:300].decode(errors='replace')}"


def _json(response: Response, what: str) -> dict[str, Any]:
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AcmeFailure(f"{what}: the answer is not a JSON object ({_problem(response)})")
    return data


def _text(data: dict[str, Any], member: str, what: str) -> str:
    value = data.get(member)
    if not isinstance(value, str) or not value:
        raise AcmeFailure(f"{what}: no {member!r} in {json.dumps(data)[:300]}")
    return value


class AcmeClient:
    """One ACME account on one keep-alive connection to one server."""

    def __init__(self, connection: Connection, directory_url: str) -> None:
        self.connection = connection
        self.origin = f"https://{connection.authority}"
        self.directory_url = directory_url
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = jwk_from_public_key(self.key.public_key())
        self.thumbprint = jwk_thumbprint(self.jwk)
        self.account_url: str | None = None
        self.directory: dict[str, Any] = {}
        self._nonce: str | None = None
        self.nonce_retries = 0
        #: Retry-After values the server sent, per step of an order (the client ignores them).
        self.retry_after: dict[str, set[str]] = {}
        self._step = "set-up"

    def use(self, connection: Connection) -> None:
        """Go on over a new connection (the old one broke); the account stays."""
        self.connection = connection
        self._nonce = None

    def _target(self, url: str) -> str:
        if not url.startswith(self.origin + "/"):
            raise AcmeFailure(f"{url} is not on this connection's server ({self.origin})")
        return url[len(self.origin) :]

    async def _send(
        self, method: str, url: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> Response:
        response = await self.connection.request(method, self._target(url), body, headers)
        nonce = response.header("replay-nonce")
        if nonce:
            self._nonce = nonce
        return response

    async def start(self) -> None:
        """Read the directory and get the first nonce (untimed set-up)."""
        response = await self._send("GET", self.directory_url)
        if response.status != 200:
            raise AcmeFailure(f"the directory: {_problem(response)}")
        self.directory = _json(response, "the directory")
        for name in ("newNonce", "newAccount", "newOrder"):
            _text(self.directory, name, "the directory")
        response = await self._send("HEAD", self.directory["newNonce"])
        if self._nonce is None:
            raise AcmeFailure(f"newNonce gave no Replay-Nonce (HTTP {response.status})")

    def _jws(self, url: str, payload: dict[str, Any] | None, use_jwk: bool) -> bytes:
        nonce, self._nonce = self._nonce, None
        if nonce is None:
            raise AcmeFailure("no nonce left: the last response carried no Replay-Nonce")
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if use_jwk:
            protected["jwk"] = self.jwk
        else:
            if self.account_url is None:
                raise AcmeFailure("no account yet")
            protected["kid"] = self.account_url
        encoded_protected = b64url_encode(json.dumps(protected, separators=(",", ":")).encode())
        encoded_payload = (
            "" if payload is None else b64url_encode(json.dumps(payload).encode("utf-8"))
        )
        signing_input = f"{encoded_protected}.{encoded_payload}".encode("ascii")
        signature = create_signature("ES256", self.key, signing_input)
        return json.dumps(
            {
                "protected": encoded_protected,
                "payload": encoded_payload,
                "signature": b64url_encode(signature),
            }
        ).encode()

    async def post(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        use_jwk: bool = False,
        accept: str | None = None,
    ) -> Response:
        """A signed POST (``payload=None``: POST-as-GET); one retry on ``badNonce``."""
        headers = [("content-type", JOSE_JSON)]
        if accept is not None:
            headers.append(("accept", accept))
        for attempt in range(2):
            if self._nonce is None:
                await self._send("HEAD", self.directory["newNonce"])
            response = await self._send("POST", url, self._jws(url, payload, use_jwk), headers)
            if response.status == 400 and attempt == 0 and b"badNonce" in response.body:
                self.nonce_retries += 1
                continue
            break
        retry_after = response.header("retry-after")
        if retry_after is not None:
            self.retry_after.setdefault(self._step, set()).add(retry_after)
        return response

    async def new_account(self) -> None:
        url = self.directory["newAccount"]
        response = await self.post(url, {"termsOfServiceAgreed": True}, use_jwk=True)
        location = response.header("location")
        if response.status not in (200, 201) or not location:
            raise AcmeFailure(f"newAccount: {_problem(response)}")
        self.account_url = location

    async def new_order(self, identifiers: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
        """newOrder; the order's URL and the order."""
        response = await self.post(self.directory["newOrder"], {"identifiers": identifiers})
        location = response.header("location")
        if response.status != 201 or not location:
            raise AcmeFailure(f"newOrder: {_problem(response)}")
        return location, _json(response, "newOrder")

    async def get(self, url: str, what: str) -> dict[str, Any]:
        """POST-as-GET a JSON resource."""
        response = await self.post(url, None)
        if response.status != 200:
            raise AcmeFailure(f"{what}: {_problem(response)}")
        return _json(response, what)

    async def respond(self, challenge_url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a challenge response; the challenge as the server answered it."""
        response = await self.post(challenge_url, payload)
        if response.status != 200:
            raise AcmeFailure(f"challenge: {_problem(response)}")
        return _json(response, "challenge")

    async def _poll(
        self, url: str, done: str, what: str, first: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], int]:
        """POST-as-GET *url* until its status is *done*; the object and the polls made."""
        deadline = trio.current_time() + POLL_TIMEOUT_S
        delay = FIRST_POLL_DELAY_S
        polls = 0
        data = first
        while True:
            if data is not None:
                status = data.get("status")
                if status == done:
                    return data, polls
                if status not in ("pending", "processing", "ready", "valid"):
                    error = data.get("error")
                    if error is None:
                        challenges = data.get("challenges")
                        if isinstance(challenges, list):
                            error = next(
                                (c.get("error") for c in challenges if isinstance(c, dict)),
                                None,
                            )
                    raise AcmeFailure(f"{what} is {status!r}: {json.dumps(error)[:300]}")
                if trio.current_time() > deadline:
                    raise AcmeFailure(f"{what} still {status!r} after {POLL_TIMEOUT_S:.0f} s")
                await trio.sleep(delay)
                delay = min(delay * 2, MAX_POLL_DELAY_S)
            response = await self.post(url, None)
            polls += 1
            if response.status != 200:
                raise AcmeFailure(f"{what}: {_problem(response)}")
            data = _json(response, what)

    async def complete_order(
        self,
        plan: OrderPlan,
        responder: Http01Responder,
        server_cpu: Callable[[], float] | None = None,
    ) -> OrderResult:
        """newOrder, authorization, http-01, validation, finalize, download; each step timed.

        *server_cpu* (the server's CPU seconds so far) is read at every step boundary, to
        split the server's CPU by step: meaningful with this order alone in flight. Work
        the server does after answering (the validation it starts when the challenge is
        answered) counts in the step during which it runs."""
        result = OrderResult()
        seconds = result.seconds
        retries_before = self.nonce_retries
        clock = time.perf_counter
        meter_at = server_cpu() if server_cpu is not None else 0.0

        def meter(step: str) -> None:
            nonlocal meter_at
            if server_cpu is not None:
                now = server_cpu()
                result.server_cpu_s[step] = now - meter_at
                meter_at = now

        t = clock()
        self._step = "newOrder"
        response = await self.post(
            self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": plan.name}]}
        )
        order_url = response.header("location")
        if response.status != 201 or not order_url:
            raise AcmeFailure(f"newOrder: {_problem(response)}")
        order = _json(response, "newOrder")
        authorizations = order.get("authorizations")
        if not isinstance(authorizations, list) or len(authorizations) != 1:
            raise AcmeFailure(f"newOrder: not one authorization: {authorizations!r}")
        authz_url = str(authorizations[0])
        seconds["newOrder"] = clock() - t
        meter("newOrder")

        t = clock()
        self._step = "authorization"
        response = await self.post(authz_url, None)
        if response.status != 200:
            raise AcmeFailure(f"authorization: {_problem(response)}")
        authz = _json(response, "authorization")
        challenges = authz.get("challenges")
        http01 = next(
            (
                c
                for c in (challenges if isinstance(challenges, list) else [])
                if isinstance(c, dict) and c.get("type") == "http-01"
            ),
            None,
        )
        if http01 is None:
            raise AcmeFailure(f"authorization: no http-01 challenge in {json.dumps(authz)[:300]}")
        token = _text(http01, "token", "http-01 challenge")
        challenge_url = _text(http01, "url", "http-01 challenge")
        fetched = responder.expect(token, plan.name, f"{token}.{self.thumbprint}")
        seconds["authorization"] = clock() - t
        meter("authorization")
        try:
            t = clock()
            self._step = "challenge"
            response = await self.post(challenge_url, {})
            if response.status != 200:
                raise AcmeFailure(f"challenge: {_problem(response)}")
            seconds["challenge"] = clock() - t
            meter("challenge")

            t = clock()
            self._step = "validation"
            with trio.move_on_after(VALIDATION_WAIT_S):
                await fetched.wait()
            _, result.authorization_polls = await self._poll(authz_url, "valid", "authorization")
            seconds["validation"] = clock() - t
            meter("validation")
        finally:
            responder.forget(token)

        t = clock()
        self._step = "finalize"
        response = await self.post(
            _text(order, "finalize", "order"), {"csr": b64url_encode(plan.csr_der)}
        )
        if response.status != 200:
            raise AcmeFailure(f"finalize: {_problem(response)}")
        order, result.order_polls = await self._poll(
            order_url, "valid", "order", _json(response, "finalize")
        )
        certificate_url = _text(order, "certificate", "order")
        seconds["finalize"] = clock() - t
        meter("finalize")

        t = clock()
        self._step = "download"
        response = await self.post(certificate_url, None, accept=PEM_CHAIN)
        if response.status != 200:
            raise AcmeFailure(f"certificate download: {_problem(response)}")
        seconds["download"] = clock() - t
        meter("download")
        result.chain_pem = response.body
        result.nonce_retries = self.nonce_retries - retries_before
        self._step = "after an order"
        return result


def check_chain(plan: OrderPlan, chain_pem: bytes) -> None:
    """The leaf certifies the CSR's key for the ordered name; the next certificate signed it."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise AcmeFailure(f"the certificate download is not a PEM chain: {exc}") from None
    if len(chain) < 2:
        raise AcmeFailure(f"the chain has {len(chain)} certificate(s), not leaf + issuer")
    leaf, issuer = chain[0], chain[1]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if spki != plan.public_key_der:
        raise AcmeFailure("the certificate is not for the CSR's key")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AcmeFailure("the certificate has no subjectAltName") from None
    if san.get_values_for_type(x509.DNSName) != [plan.name]:
        raise AcmeFailure(f"the certificate does not name exactly {plan.name}")
    try:
        leaf.verify_directly_issued_by(issuer)
    except Exception as exc:
        raise AcmeFailure(f"the leaf is not signed by the next certificate: {exc}") from None


# --- the http-01 responder ----------------------------------------------------------------


def bind_responder_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on a free loopback port, made before the servers start
    (they are told its port) and served once the trio loop runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(256)
    except BaseException:
        sock.close()
        raise
    return sock


class Http01Responder:
    """``GET /.well-known/acme-challenge/TOKEN`` for every server's validator, one port."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._answers: dict[str, tuple[str, bytes, trio.Event]] = {}
        #: Requests answered with a key authorization, and refused (404 / wrong Host).
        self.served = 0
        self.refused = 0

    def expect(self, token: str, name: str, key_authorization: str) -> trio.Event:
        """Answer *token* for *name*; the event is set when a validator fetched it."""
        event = trio.Event()
        self._answers[token] = (name.lower(), key_authorization.encode("ascii"), event)
        return event

    def forget(self, token: str) -> None:
        self._answers.pop(token, None)

    async def serve(
        self,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # A duplicate: serve_listeners closes it on the way out, the bound socket stays open
        # for the next trio.run.
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock.dup()))
        await trio.serve_listeners(self._handle, [listener], task_status=task_status)

    def _answer(self, target: bytes, host_header: bytes) -> tuple[int, bytes]:
        path = target.decode("ascii", errors="replace")
        if not path.startswith(CHALLENGE_PATH):
            return 404, b"not a challenge path\n"
        entry = self._answers.get(path[len(CHALLENGE_PATH) :])
        host = host_header.decode("ascii", errors="replace").lower()
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if entry is None or entry[0] != host:
            return 404, b"no such token for this name\n"
        entry[2].set()
        return 200, entry[1]

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(10):
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(8192)
                        connection.receive_data(bytes(data))
                        if not data:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        host = next((v for k, v in event.headers if k == b"host"), b"")
                        status, body = self._answer(bytes(event.target), bytes(host))
                        if status == 200:
                            self.served += 1
                        else:
                            self.refused += 1
                        headers = [
                            ("content-type", "text/plain"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ]
                        out = connection.send(h11.Response(status_code=status, headers=headers))
                        out = (out or b"") + (connection.send(h11.Data(data=body)) or b"")
                        out += connection.send(h11.EndOfMessage()) or b""
                        await stream.send_all(out)
                        return
                    if isinstance(event, h11.ConnectionClosed):
                        return
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()


__all__ = [
    "STEPS",
    "AcmeClient",
    "AcmeFailure",
    "ConnectionBroken",
    "Http01Responder",
    "OrderPlan",
    "OrderResult",
    "bind_responder_socket",
    "check_chain",
    "make_order_plans",
]
