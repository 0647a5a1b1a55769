"""Getting an OpenID Connect ID token as a person would, for ``devid login``.

The CA's OIDC provisioner certifies a key for whoever an ID token names. This module
is the client's half: it reads what the provisioner publishes (``GET /provisioners``:
the provider, the client ID, the scopes), finds the provider's endpoints (OpenID
discovery), and gets an ID token by one of two flows:

- the authorization-code flow with PKCE (RFC 7636, S256) on a loopback redirect
  (RFC 8252): a one-shot HTTP server on ``http://127.0.0.1:PORT/callback`` receives the
  browser after sign-in; ``state`` is random and checked, and the ``nonce`` the caller
  gives (the key's :func:`plugins.minting.key_nonce`) is sent so the provider puts it
  in the ID token, which binds the token to that one key;
- the device-authorization flow (RFC 8628), for a terminal without a browser: the
  person opens a URL elsewhere and enters a code while this side polls. Its ID token
  carries no nonce.

Every network wait is bounded (each request by :data:`REQUEST_TIMEOUT`, each flow by
its own timeout). Failures raise :class:`LoginError`, whose message says what went
wrong and is printed as is by the command line.

Only the standard library, httpx, attrs, cryptography and the engine are used: this
runs on a person's machine with the agent, never the server.
"""

from __future__ import annotations

import hashlib
import http.server
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import httpx

from agent.caclient import CAClientError, token_claims
from engine.jose import b64url_encode
from plugins.remote import url_problem

__all__ = [
    "DEVICE_GRANT",
    "AuthorizationRequest",
    "DevicePrompt",
    "LoginError",
    "LoginSettings",
    "LoopbackRedirect",
    "ProviderEndpoints",
    "authorization_request",
    "browser_login",
    "device_login",
    "discover",
    "exchange_code",
    "new_state",
    "pkce_challenge",
    "pkce_verifier",
]

#: The bound on one request to the provider, in seconds.
REQUEST_TIMEOUT = 30.0
#: How long the loopback server waits for one browser request to arrive in full.
CALLBACK_READ_TIMEOUT = 10.0
#: The OAuth grant type of RFC 8628's token requests.
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628: the polling interval when the provider states none, and the step by which
#: ``slow_down`` lengthens it, in seconds.
DEVICE_DEFAULT_INTERVAL = 5.0
DEVICE_SLOW_DOWN_STEP = 5.0
CALLBACK_PATH = "/callback"
SIGNED_IN_PAGE = "Signed in to devid; you can close this tab.\n"


class LoginError(CAClientError):
    """Signing in with the OpenID provider failed; the message says why."""


# --- what the CA publishes --------------------------------------------------------------


def _text(view: Mapping[str, Any], field: str, name: str) -> str:
    value = view.get(field)
    if not isinstance(value, str) or not value:
        raise LoginError(f"provisioner {name!r}: the CA's view has no {field!r}")
    return value


@attrs.frozen
class LoginSettings:
    """How to sign in for one OIDC provisioner, as the CA's ``GET /provisioners`` shows it."""

    provisioner: str
    #: The provider's issuer URL (where discovery starts).
    provider: str
    client_id: str
    #: Only for providers that demand a secret of a public client (sent as
    #: ``client_secret_post``); a secret published by the CA protects nothing.
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    #: The loopback redirect's port; 0 lets the system choose a free one.
    redirect_port: int = 0
    #: The provisioner refuses an ID token without the key's nonce.
    require_nonce: bool = False

    @classmethod
    def from_view(cls, view: Mapping[str, Any]) -> LoginSettings:
        """Read one entry of ``GET /provisioners``; refuse any provisioner that is not OIDC."""
        name = view.get("name")
        name = name if isinstance(name, str) else "?"
        kind = view.get("type")
        if kind != "OIDC":
            raise LoginError(
                f"provisioner {name!r} is of type {kind!r}, not OIDC: `devid login` signs in"
                " only through an OIDC provisioner"
            )
        secret = view.get("clientSecret")
        if secret is not None and not isinstance(secret, str):
            raise LoginError(f"provisioner {name!r}: the CA's clientSecret is not a string")
        scopes = view.get("scopes", ["openid", "email", "profile"])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise LoginError(f"provisioner {name!r}: the CA's scopes are not a list of strings")
        if "openid" not in scopes:
            scopes = ["openid", *scopes]
        port = view.get("redirectPort", 0)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise LoginError(f"provisioner {name!r}: the CA's redirectPort {port!r} is not a port")
        require_nonce = view.get("requireNonce", False)
        if not isinstance(require_nonce, bool):
            raise LoginError(f"provisioner {name!r}: the CA's requireNonce is not a boolean")
        return cls(
            provisioner=name,
            provider=_text(view, "provider", name),
            client_id=_text(view, "clientID", name),
            client_secret=secret or None,
            scopes=tuple(scopes),
            redirect_port=port,
            require_nonce=require_nonce,
        )

    def client_fields(self) -> dict[str, str]:
        """The client's identification in a form body (``client_secret_post``)."""
        fields = {"client_id": self.client_id}
        if self.client_secret:
            fields["client_secret"] = self.client_secret
        return fields


# --- discovery --------------------------------------------------------------------------


def check_url(url: str, what: str) -> str:
    """*url* if it is https, or http to a loopback address (the rule the CA fetches the
    provider's keys by, :func:`plugins.remote.url_problem`); else a :class:`LoginError`."""
    problem = url_problem(url)
    if problem is not None:
        raise LoginError(f"the {what}: {problem}")
    return url


@attrs.frozen
class ProviderEndpoints:
    """The endpoints of a provider's discovery document that signing in uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    #: RFC 8628's endpoint, when the provider offers the device flow.
    device_authorization_endpoint: str | None = None


@contextmanager
def _http(http: httpx.Client | None) -> Iterator[httpx.Client]:
    """*http*, or a client of our own (closed afterwards) with every request bounded."""
    if http is not None:
        yield http
        return
    with httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False) as client:
        yield client


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(f"the {what} answered {response.status_code} without a JSON object")
    return body


def discover(issuer: str, *, http: httpx.Client | None = None) -> ProviderEndpoints:
    """The provider's endpoints from ``ISSUER/.well-known/openid-configuration``.

    The document's ``issuer`` must be *issuer* exactly (OpenID Connect Discovery 1.0,
    section 4.3), and every URL https (http only to a loopback address)."""
    check_url(issuer, "provider")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with _http(http) as client:
        try:
            response = client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the OpenID provider at {url}: {exc}") from None
    if response.status_code != 200:
        raise LoginError(f"the provider's discovery document {url} answered {response.status_code}")
    document = _json_object(response, "discovery document")
    if document.get("issuer") != issuer:
        raise LoginError(
            f"the discovery document at {url} names the issuer {document.get('issuer')!r},"
            f" not {issuer!r}"
        )

    def endpoint(field: str, *, required: bool = True) -> str | None:
        value = document.get(field)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise LoginError(f"the discovery document at {url} has no {field}")
        return check_url(value, f"provider's {field}")

    authorization = endpoint("authorization_endpoint")
    token = endpoint("token_endpoint")
    assert authorization is not None and token is not None  # required=True
    return ProviderEndpoints(
        issuer=issuer,
        authorization_endpoint=authorization,
        token_endpoint=token,
        device_authorization_endpoint=endpoint("device_authorization_endpoint", required=False),
    )


# --- the authorization-code flow with PKCE ----------------------------------------------


def pkce_verifier() -> str:
    """A PKCE code verifier: 64 characters of base64url from 48 random bytes (RFC 7636
    asks for 43 to 128)."""
    return secrets.token_urlsafe(48)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of *verifier*."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def new_state() -> str:
    """A random ``state`` for one authorization request."""
    return secrets.token_urlsafe(24)


@attrs.frozen
class AuthorizationRequest:
    """One authorization request: the URL for the browser and what the exchange needs."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str
    nonce: str | None


def authorization_request(
    settings: LoginSettings,
    endpoints: ProviderEndpoints,
    redirect_uri: str,
    *,
    state: str,
    nonce: str | None,
    code_verifier: str | None = None,
) -> AuthorizationRequest:
    """The authorization URL for *redirect_uri*, with a PKCE S256 challenge, *state* and
    *nonce* (left out when None)."""
    verifier = code_verifier or pkce_verifier()
    query = {
        "response_type": "code",
        "client_id": settings.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(settings.scopes),
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if nonce is not None:
        query["nonce"] = nonce
    base = endpoints.authorization_endpoint
    separator = "&" if urllib.parse.urlsplit(base).query else "?"
    url = base + separator + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return AuthorizationRequest(url, state, verifier, redirect_uri, nonce)


@attrs.define
class _Outcome:
    """What the loopback server received: a code, or why there is none."""

    code: str | None = None
    error: str | None = None
    done: threading.Event = attrs.field(factory=threading.Event)


def _callback_handler(state: str, outcome: _Outcome) -> type[http.server.BaseHTTPRequestHandler]:
    class Callback(http.server.BaseHTTPRequestHandler):
        timeout = CALLBACK_READ_TIMEOUT  # a connection that never sends is dropped

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path != CALLBACK_PATH:
                self._answer(404, "Not found.\n")
                return
            if outcome.done.is_set():
                self._answer(409, "This sign-in is already finished; return to your terminal.\n")
                return
            query = urllib.parse.parse_qs(parts.query)

            def one(name: str) -> str | None:
                values = query.get(name)
                return values[0] if values else None

            code, error = None, None
            if one("state") != state:
                error = (
                    "the sign-in came back with a wrong state (not the request devid sent);"
                    " start the login again"
                )
            elif one("error") is not None:
                described = one("error_description")
                error = f"the provider refused the sign-in: {one('error')}" + (
                    f" ({described})" if described else ""
                )
            elif not one("code"):
                error = "the sign-in came back without an authorization code"
            else:
                code = one("code")
            if error is None:
                self._answer(200, SIGNED_IN_PAGE)
            else:
                self._answer(400, f"Signing in to devid failed: {error}.\n")
            outcome.code, outcome.error = code, error
            outcome.done.set()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows only what the login prints."""

    return Callback


class LoopbackRedirect:
    """A one-shot HTTP server on 127.0.0.1 that receives the browser after sign-in.

    Use it as a context manager: it listens from ``__enter__`` (its
    :attr:`redirect_uri` is known then) until ``__exit__``. The first request to
    ``/callback`` decides the outcome: a code when its ``state`` is *state*, else an
    error (a wrong state, or the provider's ``error``); :meth:`wait` returns the code or
    raises :class:`LoginError`.
    """

    def __init__(self, state: str, port: int = 0) -> None:
        self._outcome = _Outcome()
        try:
            self._server = http.server.ThreadingHTTPServer(
                ("127.0.0.1", port), _callback_handler(state, self._outcome)
            )
        except OSError as exc:
            raise LoginError(
                f"cannot listen on 127.0.0.1:{port} for the sign-in redirect: {exc.strerror}"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="devid-login-callback",
            daemon=True,
        )

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"

    def __enter__(self) -> LoopbackRedirect:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def wait(self, timeout: float) -> str:
        """The authorization code, once the browser comes back (at most *timeout* s)."""
        if not self._outcome.done.wait(timeout):
            raise LoginError(f"no sign-in within {timeout:g} s (the browser never came back)")
        if self._outcome.error is not None or self._outcome.code is None:
            raise LoginError(self._outcome.error or "the sign-in came back without a code")
        return self._outcome.code


def _provider_error(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    described = body.get("error_description")
    return f"{error}" + (f" ({described})" if described else "")


def _id_token_from(response: httpx.Response, what: str) -> str:
    body = _json_object(response, what)
    if response.status_code != 200 or "error" in body:
        raise LoginError(
            f"the provider refused the {what} ({response.status_code}): {_provider_error(body)}"
        )
    token = body.get("id_token")
    if not isinstance(token, str) or not token:
        raise LoginError(
            f"the provider's answer to the {what} has no id_token (is 'openid' a scope?)"
        )
    return token


def _check_nonce(token: str, nonce: str | None, settings: LoginSettings) -> None:
    """The ID token carries the nonce sent (the CA checks it again; this says it sooner)."""
    if nonce is None:
        return
    got = token_claims(token).get("nonce")
    if got is None and settings.require_nonce:
        raise LoginError(
            "the provider's ID token has no nonce, and the provisioner"
            f" {settings.provisioner!r} requires one"
        )
    if got is not None and got != nonce:
        raise LoginError("the provider's ID token carries another nonce than the one sent")


def exchange_code(
    settings: LoginSettings,
    endpoints: ProviderEndpoints,
    request: AuthorizationRequest,
    code: str,
    *,
    http: httpx.Client | None = None,
) -> str:
    """Trade the authorization *code* for the ID token at the token endpoint (with the
    PKCE verifier, and the client secret when the provisioner has one)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.code_verifier,
        **settings.client_fields(),
    }
    with _http(http) as client:
        try:
            response = client.post(
                endpoints.token_endpoint, data=form, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the provider's token endpoint: {exc}") from None
    token = _id_token_from(response, "code exchange")
    _check_nonce(token, request.nonce, settings)
    return token


def browser_login(
    settings: LoginSettings,
    endpoints: ProviderEndpoints,
    *,
    nonce: str | None,
    show_url: Callable[[str], None],
    timeout: float = 300.0,
    http: httpx.Client | None = None,
) -> str:
    """Sign in through the browser (authorization code, PKCE, loopback redirect); the ID token.

    *show_url* gets the authorization URL once the loopback server listens (the command
    line prints it and opens the browser). The person has *timeout* seconds to sign in."""
    state = new_state()
    with LoopbackRedirect(state, settings.redirect_port) as loopback:
        request = authorization_request(
            settings, endpoints, loopback.redirect_uri, state=state, nonce=nonce
        )
        show_url(request.url)
        code = loopback.wait(timeout)
    return exchange_code(settings, endpoints, request, code, http=http)


# --- the device-authorization flow (RFC 8628) -------------------------------------------


@attrs.frozen
class DevicePrompt:
    """What the person is asked to do: open :attr:`verification_uri` and enter :attr:`user_code`."""

    user_code: str
    verification_uri: str
    #: The URL with the code in it, when the provider gives one.
    verification_uri_complete: str | None
    expires_in: float

    def text(self) -> str:
        lines = f"To sign in, open {self.verification_uri} and enter the code {self.user_code}"
        if self.verification_uri_complete:
            lines += f"\n(or open {self.verification_uri_complete})"
        return lines


def _positive(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return float(value)


def device_login(
    settings: LoginSettings,
    endpoints: ProviderEndpoints,
    *,
    show_prompt: Callable[[DevicePrompt], None],
    timeout: float = 300.0,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Sign in with the device-authorization flow; the ID token (which has no nonce).

    *show_prompt* gets the code and URL to show the person. Polling follows the
    provider's interval (longer after ``slow_down``) and ends with the token, a refusal,
    or after the code's ``expires_in`` or *timeout* seconds, whichever is sooner."""
    if endpoints.device_authorization_endpoint is None:
        raise LoginError(
            f"the provider {endpoints.issuer} offers no device authorization; sign in"
            " through the browser instead (without --device)"
        )
    if settings.require_nonce:
        raise LoginError(
            f"the provisioner {settings.provisioner!r} requires an ID token bound to the key"
            " (a nonce), which the device flow cannot carry; sign in through the browser"
            " instead (without --device)"
        )
    started = time.monotonic()
    form = {"scope": " ".join(settings.scopes), **settings.client_fields()}
    with _http(http) as client:
        try:
            response = client.post(
                endpoints.device_authorization_endpoint,
                data=form,
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the provider's device authorization: {exc}") from None
        body = _json_object(response, "device authorization")
        if response.status_code != 200 or "error" in body:
            raise LoginError(
                f"the provider refused the device authorization ({response.status_code}):"
                f" {_provider_error(body)}"
            )
        device_code = body.get("device_code")
        user_code = body.get("user_code")
        # "verification_url" is what some providers (Google) call it.
        uri = body.get("verification_uri") or body.get("verification_url")
        if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
            raise LoginError("the provider's device authorization lacks a code or its URL")
        assert isinstance(device_code, str) and isinstance(user_code, str) and isinstance(uri, str)
        complete = body.get("verification_uri_complete")
        expires_in = _positive(body.get("expires_in"), timeout)
        interval = _positive(body.get("interval"), DEVICE_DEFAULT_INTERVAL)
        show_prompt(
            DevicePrompt(
                user_code=user_code,
                verification_uri=uri,
                verification_uri_complete=complete if isinstance(complete, str) else None,
                expires_in=expires_in,
            )
        )
        deadline = started + min(expires_in, timeout)
        poll = {"grant_type": DEVICE_GRANT, "device_code": device_code, **settings.client_fields()}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sleep(min(interval, remaining))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:  # a slow answer does not stretch the wait beyond the deadline much
                response = client.post(
                    endpoints.token_endpoint,
                    data=poll,
                    headers={"Accept": "application/json"},
                    timeout=min(REQUEST_TIMEOUT, max(remaining, 1.0)),
                )
            except httpx.HTTPError as exc:
                raise LoginError(f"cannot reach the provider's token endpoint: {exc}") from None
            answer = _json_object(response, "device code")
            error = answer.get("error")
            if response.status_code == 200 and error is None:
                return _id_token_from(response, "device code")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += DEVICE_SLOW_DOWN_STEP
                continue
            if error == "access_denied":
                raise LoginError("the sign-in was denied at the provider")
            if error == "expired_token":
                raise LoginError("the code expired before the sign-in finished; start again")
            raise LoginError(
                f"the provider refused the device code ({response.status_code}):"
                f" {_provider_error(answer)}"
            )
    raise LoginError(
        f"no sign-in within {min(expires_in, timeout):g} s (the code was never approved)"
    )
