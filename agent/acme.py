"""A small RFC 8555 (ACME) client: what the device agent needs to enrol, no more.

Requests are JWS in the flattened JSON serialization (RFC 8555 6.2) signed with
the account key; the algorithm follows from the key (ES256 for the agent's P-256
account key) and is never negotiated. The protected header carries the nonce,
the URL and either the account key as ``jwk`` (newAccount, revocation with the
certificate's own key) or the account URL as ``kid`` (everything else).

Every response's ``Replay-Nonce`` is kept for the next request; a ``badNonce``
refusal is retried once with the fresh nonce it carries. Resources are read
with POST-as-GET. Polling honours ``Retry-After`` within bounds (no server can
park the agent for an hour) and gives up after ``poll_timeout`` seconds.

The HTTPS connection trusts only the devid root given by the caller. Errors are
:class:`ACMEError` (an :class:`agent.state.AgentError`) carrying the problem
document's type, detail and subproblems.

The account key is a software P-256 key kept in the agent's state directory
(``acme-account.key``, mode 0600). It identifies the ACME *account*; it is not
the device's key, which lives in the TPM.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.jose import (
    PrivateKey,
    b64url_encode,
    create_signature,
    default_algorithm,
    jwk_from_public_key,
    jwk_thumbprint,
)

from .state import AgentError, AgentState

__all__ = [
    "ACCOUNT_KEY_FILE",
    "ACMEClient",
    "ACMEError",
    "ACMEResource",
    "load_or_create_account_key",
]

ACME_ERROR = "urn:ietf:params:acme:error:"
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
ACCOUNT_KEY_FILE = "acme-account.key"

TIMEOUT = httpx.Timeout(30.0)
#: How long to wait, in total, for an authorization or order to settle.
POLL_TIMEOUT = 60.0
#: No single wait between polls is longer than this, whatever Retry-After says.
MAX_POLL_INTERVAL = 10.0
FIRST_POLL_INTERVAL = 0.2
MAX_DETAIL = 500
#: Statuses after which an authorization or order never changes again.
FAILED = frozenset({"invalid", "deactivated", "expired", "revoked"})


class ACMEError(AgentError):
    """The ACME server refused a request (or said something the client cannot use).

    ``type`` is the problem document's full type URN (``urn:ietf:params:acme:error:...``),
    ``problem`` its short name (``badNonce``, ``rejectedIdentifier``, ...), ``detail``
    the server's own words, ``status`` the HTTP status (None when the problem was
    recorded on an authorization or order rather than returned), ``subproblems``
    the per-identifier problems as the server sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        detail: str | None = None,
        status: int | None = None,
        subproblems: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.type = type
        self.detail = detail
        self.status = status
        self.subproblems = tuple(subproblems)

    @property
    def problem(self) -> str | None:
        if self.type is None:
            return None
        return self.type.removeprefix(ACME_ERROR)

    @classmethod
    def from_problem(cls, what: str, problem: Any, status: int | None = None) -> ACMEError:
        """An error from a problem document (RFC 7807) refusing *what*."""
        if not isinstance(problem, Mapping):
            problem = {}
        ptype = problem.get("type") if isinstance(problem.get("type"), str) else None
        detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
        raw_subs = problem.get("subproblems")
        subs = [s for s in raw_subs if isinstance(s, Mapping)] if isinstance(raw_subs, list) else []
        short = ptype.removeprefix(ACME_ERROR) if ptype else "no problem type"
        head = f"{status} {short}" if status is not None else short
        text = _one_line(detail) if detail else "(no detail)"
        extra = [
            _one_line(str(s["detail"]))
            for s in subs
            if isinstance(s.get("detail"), str) and s["detail"] != detail
        ]
        if extra:
            text += " (" + "; ".join(extra) + ")"
        return cls(
            f"the ACME server refused {what} ({head}): {text}",
            type=ptype,
            detail=detail,
            status=status,
            subproblems=subs,
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_DETAIL]


@attrs.frozen
class ACMEResource:
    """An ACME object (account, order, authorization, challenge) and its URL."""

    url: str
    data: Mapping[str, Any]

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return value if isinstance(value, str) else None

    def text(self, member: str) -> str:
        """A string member the protocol requires; its absence is the server's error."""
        value = self.data.get(member)
        if not isinstance(value, str) or not value:
            raise AgentError(f"the ACME server's object at {self.url} has no {member!r}")
        return value

    def urls(self, member: str) -> list[str]:
        value = self.data.get(member)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AgentError(f"the ACME server's object at {self.url} has no {member!r} list")
        return list(value)


# --- the account key ---------------------------------------------------------------


def load_or_create_account_key(state: AgentState) -> ec.EllipticCurvePrivateKey:
    """The ACME account key in the state directory; a new P-256 key on first use.

    The file is PKCS#8 PEM, mode 0600, in a 0700 directory. It is a software key
    on purpose: it only identifies the ACME account, while the device proves
    itself with TPM-resident keys.
    """
    path = state.ensure().path(ACCOUNT_KEY_FILE)
    try:
        data: bytes | None = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise AgentError(f"cannot read the ACME account key {path}: {exc.strerror}") from None
    if data is not None:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise AgentError(f"{path} is not a PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise AgentError(f"{path} is not an ECC P-256 key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    state._write(ACCOUNT_KEY_FILE, pem)  # atomic, 0600
    return key


# --- the client -------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), if the server sent one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AgentError(f"the ACME server's answer to {what} is not a JSON object")
    return data


class ACMEClient:
    """One ACME account's conversation with one ACME server (a directory URL).

    Use it as a context manager, or call :meth:`close`. ``account_key`` signs
    every request; :meth:`new_account` must run first (it learns the account URL
    that later requests name as ``kid``). Blocking: run it in a thread from async
    code.
    """

    def __init__(
        self,
        directory_url: str,
        root_pem_path: Path | str | None,
        account_key: PrivateKey,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        poll_timeout: float = POLL_TIMEOUT,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.directory_url = directory_url
        self.account_key = account_key
        self.alg = default_algorithm(account_key)
        self.jwk = jwk_from_public_key(account_key.public_key())
        self.thumbprint = jwk_thumbprint(self.jwk)
        self.account_url: str | None = None
        self.poll_timeout = poll_timeout
        self.max_poll_interval = max_poll_interval
        self._sleep = sleep
        self._nonce: str | None = None
        self._directory: dict[str, Any] | None = None
        verify: ssl.SSLContext | bool = True
        if transport is None:
            if root_pem_path is None:
                raise AgentError("the ACME client needs the devid root certificate (--root)")
            try:
                verify = ssl.create_default_context(cafile=str(root_pem_path))
            except (OSError, ssl.SSLError) as exc:
                raise AgentError(f"cannot use {root_pem_path} as a TLS root: {exc}") from None
        self._http = httpx.Client(
            verify=verify,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "devid-agent"},
        )

    @property
    def http(self) -> httpx.Client:
        """The HTTPS client (and its kept connections) this ACME client sends through:
        other requests of the same enrolment to the same CA share its connection."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ACMEClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise AgentError(f"cannot reach the ACME server at {url}: {exc}") from None
        nonce = response.headers.get("Replay-Nonce")
        if nonce:
            self._nonce = nonce
        return response

    @staticmethod
    def _refusal(what: str, response: httpx.Response) -> ACMEError:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict) or not isinstance(problem.get("type"), str):
            # Not a problem document (a proxy, or a path outside ACME): its message if any.
            messages = [
                problem[k]
                for k in ("detail", "message")
                if isinstance(problem, dict) and isinstance(problem.get(k), str) and problem[k]
            ]
            text = _one_line(messages[0] if messages else response.text) or response.reason_phrase
            return ACMEError(
                f"the ACME server refused {what} ({response.status_code}): {text}",
                status=response.status_code,
            )
        return ACMEError.from_problem(what, problem, response.status_code)

    def directory(self) -> dict[str, Any]:
        """The directory (fetched once): newNonce, newAccount, newOrder, ..., meta."""
        if self._directory is None:
            response = self._send("GET", self.directory_url)
            if response.status_code != 200:
                raise self._refusal("the directory request", response)
            data = _json_object(response, "the directory request")
            for name in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(data.get(name), str):
                    raise AgentError(f"{self.directory_url} is not an ACME directory (no {name!r})")
            self._directory = data
        return self._directory

    def endpoint(self, name: str) -> str:
        url = self.directory().get(name)
        if not isinstance(url, str) or not url:
            raise AgentError(f"the ACME server's directory has no {name!r}")
        return url

    def _fresh_nonce(self) -> str:
        if self._nonce is None:
            response = self._send("HEAD", self.endpoint("newNonce"))
            if response.status_code >= 400 or self._nonce is None:
                raise AgentError("the ACME server's newNonce gave no Replay-Nonce")
        nonce, self._nonce = self._nonce, None  # a nonce is good for one request
        assert nonce is not None
        return nonce

    def _jws(
        self,
        url: str,
        payload: Mapping[str, Any] | None,
        *,
        key: PrivateKey | None = None,
        use_jwk: bool = False,
    ) -> bytes:
        signer = key if key is not None else self.account_key
        alg = default_algorithm(signer)
        protected: dict[str, Any] = {"alg": alg, "nonce": self._fresh_nonce(), "url": url}
        if use_jwk or key is not None:
            protected["jwk"] = jwk_from_public_key(signer.public_key())
        else:
            if self.account_url is None:
                raise AgentError("no ACME account yet: call new_account() first")
            protected["kid"] = self.account_url
        encoded_protected = b64url_encode(json.dumps(protected, separators=(",", ":")).encode())
        encoded_payload = (
            "" if payload is None else b64url_encode(json.dumps(payload).encode("utf-8"))
        )
        signing_input = f"{encoded_protected}.{encoded_payload}".encode("ascii")
        signature = create_signature(alg, signer, signing_input)
        body = {
            "protected": encoded_protected,
            "payload": encoded_payload,
            "signature": b64url_encode(signature),
        }
        return json.dumps(body).encode()

    def post(
        self,
        url: str,
        payload: Mapping[str, Any] | None,
        *,
        what: str,
        key: PrivateKey | None = None,
        use_jwk: bool = False,
        accept: str | None = None,
    ) -> httpx.Response:
        """A signed POST (``payload=None`` is POST-as-GET); refusals raise ACMEError.

        A ``badNonce`` refusal is retried once, with the nonce that came with it.
        """
        headers = {"Content-Type": JOSE_JSON}
        if accept:
            headers["Accept"] = accept
        for attempt in range(2):
            body = self._jws(url, payload, key=key, use_jwk=use_jwk)
            response = self._send("POST", url, content=body, headers=headers)
            if response.status_code < 400:
                return response
            error = self._refusal(what, response)
            if error.problem == "badNonce" and attempt == 0:
                continue
            raise error
        raise AssertionError("unreachable")

    def get(self, url: str, what: str) -> ACMEResource:
        """POST-as-GET a JSON resource."""
        response = self.post(url, None, what=what)
        return ACMEResource(url, _json_object(response, what))

    # --- account ------------------------------------------------------------------------

    def key_authorization(self, token: str) -> str:
        """RFC 8555 8.1: ``token || '.' || base64url(JWK thumbprint of the account key)``."""
        return f"{token}.{self.thumbprint}"

    def new_account(
        self,
        *,
        contact: Iterable[str] = (),
        terms_of_service_agreed: bool = True,
        only_return_existing: bool = False,
        external_account_binding: tuple[str, bytes] | None = None,
    ) -> ACMEResource:
        """Create the account, or find the one this key already has (200 with Location).

        ``only_return_existing`` never creates one (the server answers
        ``accountDoesNotExist``). ``external_account_binding`` is ``(key id, HMAC
        key)`` for servers that require EAB (RFC 8555 7.3.4, HS256).
        """
        url = self.endpoint("newAccount")
        payload: dict[str, Any] = {}
        if only_return_existing:
            payload["onlyReturnExisting"] = True
        else:
            payload["termsOfServiceAgreed"] = terms_of_service_agreed
            contacts = list(contact)
            if contacts:
                payload["contact"] = contacts
        if external_account_binding is not None:
            payload["externalAccountBinding"] = self._eab(url, *external_account_binding)
        response = self.post(url, payload, what="the new account", use_jwk=True)
        location = response.headers.get("Location")
        if not location:
            raise AgentError("the ACME server's newAccount answer has no Location (account URL)")
        self.account_url = str(response.url.join(location))
        data = _json_object(response, "the new account") if response.content else {}
        return ACMEResource(self.account_url, data)

    def _eab(self, url: str, key_id: str, hmac_key: bytes) -> dict[str, str]:
        protected = b64url_encode(
            json.dumps({"alg": "HS256", "kid": key_id, "url": url}, separators=(",", ":")).encode()
        )
        payload = b64url_encode(json.dumps(self.jwk, separators=(",", ":")).encode())
        mac = hmac.new(hmac_key, f"{protected}.{payload}".encode("ascii"), hashlib.sha256)
        return {
            "protected": protected,
            "payload": payload,
            "signature": b64url_encode(mac.digest()),
        }

    # --- orders, authorizations, challenges ---------------------------------------------

    def new_order(self, identifiers: Sequence[Mapping[str, str]]) -> ACMEResource:
        """Order a certificate for *identifiers* (``[{"type": ..., "value": ...}]``)."""
        payload = {"identifiers": [dict(i) for i in identifiers]}
        response = self.post(self.endpoint("newOrder"), payload, what="the new order")
        location = response.headers.get("Location")
        if not location:
            raise AgentError("the ACME server's newOrder answer has no Location (order URL)")
        return ACMEResource(str(response.url.join(location)), _json_object(response, "newOrder"))

    def order(self, url: str) -> ACMEResource:
        return self.get(url, "the order request")

    def authorization(self, url: str) -> ACMEResource:
        return self.get(url, "the authorization request")

    def deactivate_authorization(self, url: str) -> ACMEResource:
        """RFC 8555 7.5.2: give up an authorization (a reused one whose key is gone)."""
        response = self.post(url, {"status": "deactivated"}, what="the deactivation")
        return ACMEResource(url, _json_object(response, "the deactivation"))

    def respond(self, challenge_url: str, payload: Mapping[str, Any] | None = None) -> ACMEResource:
        """Answer a challenge: ``{}`` for most types, the evidence for device-attest-01."""
        response = self.post(challenge_url, dict(payload or {}), what="the challenge response")
        return ACMEResource(challenge_url, _json_object(response, "the challenge response"))

    def _poll(self, url: str, done: frozenset[str], what: str, *, failure: str) -> ACMEResource:
        deadline = time.monotonic() + self.poll_timeout
        interval = FIRST_POLL_INTERVAL
        while True:
            response = self.post(url, None, what=what)
            resource = ACMEResource(url, _json_object(response, what))
            status = resource.status
            if status in done:
                return resource
            if status in FAILED or status is None:
                raise self._failure(resource, failure)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentError(
                    f"gave up waiting for {failure}: still {status!r} after"
                    f" {self.poll_timeout:g} s ({url})"
                )
            wait = _retry_after(response)
            if wait is None:
                wait, interval = interval, min(interval * 2, self.max_poll_interval)
            self._sleep(max(0.0, min(wait, self.max_poll_interval, remaining)))

    @staticmethod
    def _failure(resource: ACMEResource, failure: str) -> AgentError:
        """The problem a failed authorization's challenge or a failed order recorded."""
        problems: list[Any] = []
        if isinstance(resource.data.get("error"), Mapping):
            problems.append(resource.data["error"])
        challenges = resource.data.get("challenges")
        if isinstance(challenges, list):
            problems += [
                c["error"]
                for c in challenges
                if isinstance(c, Mapping) and isinstance(c.get("error"), Mapping)
            ]
        if problems:
            return ACMEError.from_problem(failure, problems[0])
        return ACMEError(f"the ACME server refused {failure}: it is {resource.status!r}")

    def wait_for_authorization(self, url: str) -> ACMEResource:
        """Poll an authorization until it is valid; raise the challenge's error otherwise."""
        return self._poll(
            url, frozenset({"valid"}), "the authorization request", failure="the authorization"
        )

    def wait_for_order(
        self, url: str, statuses: Iterable[str] = ("ready", "valid")
    ) -> ACMEResource:
        return self._poll(url, frozenset(statuses), "the order request", failure="the order")

    def finalize(self, order: ACMEResource, csr_der: bytes) -> ACMEResource:
        """Finalize with a DER CSR and wait until the order is valid (it names the certificate)."""
        if order.status != "ready":
            order = self.wait_for_order(order.url, ("ready",))
        response = self.post(
            order.text("finalize"), {"csr": b64url_encode(csr_der)}, what="the finalize request"
        )
        answer = ACMEResource(order.url, _json_object(response, "the finalize request"))
        if answer.status == "valid" and isinstance(answer.data.get("certificate"), str):
            return answer
        return self.wait_for_order(order.url, ("valid",))

    def certificate_pem(self, url: str) -> str:
        """Download a certificate chain (PEM, leaf first)."""
        response = self.post(url, None, what="the certificate download", accept=PEM_CHAIN)
        return response.text

    def certificate_chain(self, url: str) -> list[x509.Certificate]:
        pem = self.certificate_pem(url)
        try:
            chain = x509.load_pem_x509_certificates(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise AgentError(f"the certificate at {url} is not a PEM certificate chain") from None
        return chain

    def revoke(
        self,
        certificate: x509.Certificate,
        reason: int | None = None,
        *,
        key: PrivateKey | None = None,
    ) -> None:
        """revokeCert, as the account (default) or with the certificate's own *key*."""
        payload: dict[str, Any] = {
            "certificate": b64url_encode(certificate.public_bytes(serialization.Encoding.DER))
        }
        if reason is not None:
            payload["reason"] = reason
        self.post(self.endpoint("revokeCert"), payload, what="the revocation", key=key)
