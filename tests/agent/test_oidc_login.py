"""Signing in as a person would (:mod:`agent.oidc`), against a real OpenID provider.

The provider (oauth2-mock-server, see tests/oidc/provider.py) answers ``/authorize``
at once with a redirect to the loopback callback, so a test plays the browser by
following the authorization URL's redirects from a thread."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest

from agent.caclient import token_claims
from agent.oidc import (
    SIGNED_IN_PAGE,
    DevicePrompt,
    LoginError,
    LoginSettings,
    LoopbackRedirect,
    ProviderEndpoints,
    authorization_request,
    browser_login,
    device_login,
    discover,
    exchange_code,
    new_state,
    pkce_verifier,
)

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.oidc.provider import OIDCProvider

pytest_plugins = ["tests.oidc.provider"]

CLIENT_ID = "devid-cli"
NONCE = "bm9uY2UtYm91bmQtdG8tYS1rZXk"


def view(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "OIDC",
        "name": "corp",
        "issuer": "tls",
        "provider": issuer,
        "clientID": CLIENT_ID,
        "scopes": ["openid", "email", "profile"],
        "redirectPort": 0,
        "requireNonce": True,
        "durations": {"default": "8h"},
        **extra,
    }


@attrs.define
class Browser:
    """Plays the person's browser: follows a URL's redirects from a thread."""

    responses: list[httpx.Response] = attrs.field(factory=list)
    threads: list[threading.Thread] = attrs.field(factory=list)

    def open(self, url: str) -> None:
        def follow() -> None:
            with httpx.Client(timeout=10.0, follow_redirects=True) as client:
                self.responses.append(client.get(url))

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10.0)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.join()


@pytest.fixture
def settings(oidc_provider: OIDCProvider) -> LoginSettings:
    return LoginSettings.from_view(view(oidc_provider.issuer))


@pytest.fixture
def endpoints(settings: LoginSettings) -> ProviderEndpoints:
    return discover(settings.provider)


def with_query(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


# --- the provisioner's view and discovery ------------------------------------------------


def test_settings_come_from_the_cas_view() -> None:
    settings = LoginSettings.from_view(
        view("https://id.example.com", clientSecret="s", scopes=["email"], redirectPort=8400)
    )
    assert settings.provisioner == "corp" and settings.client_id == CLIENT_ID
    assert settings.scopes == ("openid", "email")  # openid is always asked for
    assert settings.client_fields() == {"client_id": CLIENT_ID, "client_secret": "s"}
    assert settings.redirect_port == 8400 and settings.require_nonce


def test_a_provisioner_that_is_not_oidc_is_refused_clearly() -> None:
    with pytest.raises(LoginError, match="'ops' is of type 'JWK', not OIDC"):
        LoginSettings.from_view({"type": "JWK", "name": "ops", "issuer": "agent"})
    with pytest.raises(LoginError, match="no 'clientID'"):
        LoginSettings.from_view(view("https://id.example.com", clientID=None))


def test_discovery_finds_the_endpoints_and_checks_the_issuer(oidc_provider: OIDCProvider) -> None:
    endpoints = discover(oidc_provider.issuer)
    assert endpoints.issuer == oidc_provider.issuer
    assert endpoints.token_endpoint == f"{oidc_provider.issuer}/token"
    assert endpoints.device_authorization_endpoint == f"{oidc_provider.issuer}/device_authorization"
    with pytest.raises(LoginError, match="names the issuer"):
        discover(oidc_provider.issuer + "/")
    with pytest.raises(LoginError, match="is not HTTPS"):
        discover("http://id.example.com")


# --- the browser flow ------------------------------------------------------------------


def test_the_browser_flow_returns_an_id_token_with_the_nonce(
    oidc_provider: OIDCProvider,
    settings: LoginSettings,
    endpoints: ProviderEndpoints,
    browser: Browser,
) -> None:
    oidc_provider.set_profile({"email": "alice@example.com", "email_verified": True})
    shown: list[str] = []

    def show(url: str) -> None:
        shown.append(url)
        browser.open(url)

    token = browser_login(settings, endpoints, nonce=NONCE, show_url=show, timeout=20)
    claims = token_claims(token)
    assert claims["nonce"] == NONCE
    assert claims["aud"] == CLIENT_ID
    assert claims["iss"] == oidc_provider.issuer
    assert claims["email"] == "alice@example.com"
    query = query_of(shown[0])
    assert query["code_challenge_method"] == "S256" and query["nonce"] == NONCE
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    assert query["scope"] == "openid email profile"
    browser.join()
    assert [r.text for r in browser.responses] == [SIGNED_IN_PAGE]


def test_a_wrong_state_is_refused(
    settings: LoginSettings, endpoints: ProviderEndpoints, browser: Browser
) -> None:
    def show(url: str) -> None:
        browser.open(with_query(url, state="forged"))

    with pytest.raises(LoginError, match="wrong state"):
        browser_login(settings, endpoints, nonce=NONCE, show_url=show, timeout=20)
    browser.join()
    assert browser.responses[0].status_code == 400
    assert "wrong state" in browser.responses[0].text


def test_the_providers_error_is_reported(
    settings: LoginSettings, endpoints: ProviderEndpoints, browser: Browser
) -> None:
    def show(url: str) -> None:
        query = query_of(url)
        browser.open(
            with_query(
                query["redirect_uri"],
                error="access_denied",
                error_description="the user said no",
                state=query["state"],
            )
        )

    with pytest.raises(
        LoginError, match=r"refused the sign-in: access_denied \(the user said no\)"
    ):
        browser_login(settings, endpoints, nonce=NONCE, show_url=show, timeout=20)


def test_pkce_is_checked_by_the_provider(
    settings: LoginSettings, endpoints: ProviderEndpoints, browser: Browser
) -> None:
    state = new_state()
    with LoopbackRedirect(state) as loopback:
        request = authorization_request(
            settings, endpoints, loopback.redirect_uri, state=state, nonce=NONCE
        )
        assert len(request.code_verifier) >= 43
        browser.open(request.url)
        code = loopback.wait(20)
    tampered = attrs.evolve(request, code_verifier=pkce_verifier())
    with pytest.raises(LoginError, match=r"refused the code exchange.*code_verifier"):
        exchange_code(settings, endpoints, tampered, code)


def test_no_browser_coming_back_is_a_bounded_error(
    settings: LoginSettings, endpoints: ProviderEndpoints
) -> None:
    with pytest.raises(LoginError, match=r"no sign-in within 0.5 s"):
        browser_login(settings, endpoints, nonce=NONCE, show_url=lambda url: None, timeout=0.5)


# --- the device flow -------------------------------------------------------------------


def test_the_device_flow_returns_an_id_token(
    oidc_provider: OIDCProvider, settings: LoginSettings, endpoints: ProviderEndpoints
) -> None:
    oidc_provider.set_profile({"email": "bob@example.com", "email_verified": True})
    prompts: list[DevicePrompt] = []
    approved: list[int] = []
    people: list[threading.Thread] = []

    def approve(prompt: DevicePrompt) -> None:
        prompts.append(prompt)
        assert prompt.verification_uri_complete is not None
        uri = prompt.verification_uri_complete

        def person() -> None:
            approved.append(httpx.get(uri, timeout=10.0).status_code)

        people.append(threading.Thread(target=person, daemon=True))
        people[0].start()

    device_settings = attrs.evolve(settings, require_nonce=False)
    token = device_login(device_settings, endpoints, show_prompt=approve, timeout=30)
    claims = token_claims(token)
    assert claims["aud"] == CLIENT_ID and claims["email"] == "bob@example.com"
    assert "nonce" not in claims
    people[0].join(timeout=10.0)
    assert approved == [200]
    prompt = prompts[0]
    assert prompt.text().startswith(
        f"To sign in, open {oidc_provider.issuer}/device and enter the code {prompt.user_code}"
    )


def test_a_device_code_never_approved_ends_in_a_bounded_error(
    settings: LoginSettings, endpoints: ProviderEndpoints
) -> None:
    device_settings = attrs.evolve(settings, require_nonce=False)
    with pytest.raises(LoginError, match=r"no sign-in within 2.5 s"):
        device_login(device_settings, endpoints, show_prompt=lambda prompt: None, timeout=2.5)


def test_the_device_flow_is_refused_where_it_cannot_work(
    settings: LoginSettings, endpoints: ProviderEndpoints
) -> None:
    with pytest.raises(LoginError, match="requires an ID token bound to the key"):
        device_login(settings, endpoints, show_prompt=lambda prompt: None, timeout=5)
    without = attrs.evolve(endpoints, device_authorization_endpoint=None)
    relaxed = attrs.evolve(settings, require_nonce=False)
    with pytest.raises(LoginError, match="offers no device authorization"):
        device_login(relaxed, without, show_prompt=lambda prompt: None, timeout=5)
