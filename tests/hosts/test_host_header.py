"""The Host header never chooses the URLs the CA hands out (both hosts).

ACME directory, Link and Location headers, the JWS ``url`` a request must be
signed for, and the token audience the device accounts listing tells the agent
are built from the configured base URLs (``[server] dns_names`` plus the listen
address and port). A Host naming one of those names gets URLs with that name; any
other Host gets the first configured base URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.acme.jws import sign_request
from engine.jose import jwk_thumbprint
from tests.conftest import CA, RunningServer

from .account_helpers import admin, issue_device_certificate, register_device
from .acme_helpers import JOSE, acme_client, assert_problem, jwk_of, new_key
from .helpers import client

EVIL = "evil.example"
FORGED = {"host": EVIL}


def all_urls(response: httpx.Response) -> list[str]:
    """Every absolute URL in a response: body (JSON) and Link/Location headers."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and "://" in value:
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if response.content and response.headers.get("content-type", "").startswith(
        ("application/json", "application/problem+json")
    ):
        walk(response.json())
    for name in ("link", "location"):
        for value in response.headers.get_list(name):
            found.append(value.split(">")[0].lstrip("<"))
    return found


def assert_own(response: httpx.Response, server: RunningServer, base: str | None = None) -> None:
    """No URL names the forged host; each starts with *base* (default: the first base URL)."""
    expected = base if base is not None else server.urls[0]
    urls = all_urls(response)
    assert urls, response.headers
    assert EVIL not in response.text and EVIL not in str(response.headers)
    for url in urls:
        assert url.startswith(expected + "/"), (url, expected)


async def test_forged_host_gets_the_configured_acme_urls(server: RunningServer) -> None:
    async with client(server) as http:
        directory = await http.get("/acme/acme/directory", headers=FORGED)
        nonce = await http.head("/acme/acme/new-nonce", headers=FORGED)
        missing = await http.post("/acme/acme/order/nothing", headers={**FORGED, **JOSE})
    assert directory.status_code == 200, directory.text
    assert_own(directory, server)
    assert set(directory.json()) >= {"newNonce", "newAccount", "newOrder", "revokeCert"}
    assert nonce.status_code == 200
    assert_own(nonce, server)  # the Link rel="index" header
    assert missing.status_code >= 400
    assert_own(missing, server)  # a problem document's Link rel="index" header


async def test_a_configured_name_keeps_its_own_urls(server: RunningServer) -> None:
    """A client that reached the CA by another of its names (localhost vs 127.0.0.1)
    gets URLs with the name it used, as before."""
    assert len(server.urls) >= 2, server.urls
    async with client(server) as http:
        for base in server.urls:
            host = urlsplit(base).netloc
            r = await http.get("/acme/acme/directory", headers={"host": host})
            assert r.status_code == 200, r.text
            assert_own(r, server, base)
            # The name matches, the port is the configured one even if the Host says otherwise.
            hostname = urlsplit(base).hostname
            assert hostname is not None
            shown = f"[{hostname}]" if ":" in hostname else hostname
            r = await http.get("/acme/acme/directory", headers={"host": f"{shown.upper()}:1"})
            assert_own(r, server, base)


async def test_account_and_order_urls_ignore_a_forged_host(server: RunningServer) -> None:
    async with acme_client(server) as acme:
        # The client read the directory through the real name: every URL is ours.
        created = await acme.new_account()
        assert created.status_code == 201, created.text
        assert acme.kid is not None and acme.kid.startswith(server.url + "/")
        # Sent with a forged Host, a request is checked against (and answered with) the
        # first configured base URL.
        default_url = server.urls[0] + "/acme/acme/new-account"
        body = await acme.signed(default_url, {"onlyReturnExisting": True}, use_jwk=True)
        again = await acme.http.post(
            "/acme/acme/new-account", content=json.dumps(body).encode(), headers={**JOSE, **FORGED}
        )
        assert again.status_code == 200, again.text
        assert again.headers["location"] == server.urls[0] + urlsplit(acme.kid).path
        assert_own(again, server)


async def test_a_request_signed_for_the_forged_host_is_refused(server: RunningServer) -> None:
    """Before, URLs came from Host: a JWS whose url named the forged host matched them."""
    async with acme_client(server) as acme:
        forged_url = f"https://{EVIL}/acme/acme/new-account"
        key = new_key()
        body = sign_request(
            key, forged_url, {"termsOfServiceAgreed": True}, nonce=await acme.nonce()
        )
        r = await acme.http.post(
            "/acme/acme/new-account",
            content=json.dumps(body).encode(),
            headers={**JOSE, **FORGED},
        )
    assert "is not this resource" in assert_problem(r, 403, "unauthorized")["detail"]
    thumbprint = jwk_thumbprint(jwk_of(key))
    assert server.authority.stores.acme.acme_account_by_thumbprint("acme", thumbprint) is None
    links = [v.split(">")[0].lstrip("<") for v in r.headers.get_list("link")]
    assert links == [f"{server.urls[0]}/acme/acme/directory"]  # the detail quotes the client


async def test_device_accounts_audience_ignores_a_forged_host(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    urn = register_device(server.authority, "laptop-1")
    async with admin(server, ca) as http:
        r = await http.post(
            "/api/v1/accounts",
            json={"name": "corp-wifi", "type": "wifi", "devices": [urn]},
        )
    assert r.status_code == 201, r.text
    device = issue_device_certificate(server.authority, "laptop-1")
    async with client(server, cert=device.client_pem(tmp_path / "device.pem")) as http:
        r = await http.get("/api/v1/device/accounts", headers=FORGED)
    assert r.status_code == 200, r.text
    [account] = r.json()["accounts"]
    assert account["audience"] == f"{server.urls[0]}/1.0/sign"


def test_own_base_url_only_ever_answers_a_configured_url() -> None:
    from hosts.service.endpoints import own_base_url

    configured = ["https://ca.example:8443", "https://127.0.0.1:8443", "https://[::1]:8443"]
    assert own_base_url(configured, "https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    assert own_base_url(configured, "https://CA.example.:9") == "https://ca.example:8443"
    assert own_base_url(configured, "https://[::1]") == "https://[::1]:8443"
    for forged in (
        "https://evil.example",
        "https://evil.example@127.0.0.1.evil:8443",
        "https://[zz",
        "https://",
        "",
        "https://ca.example.evil.example:8443",
    ):
        assert own_base_url(configured, forged) == "https://ca.example:8443", forged
    # Userinfo names a configured host: still answered with the configured URL itself.
    assert own_base_url(configured, "https://evil@127.0.0.1:1") == "https://127.0.0.1:8443"
    assert own_base_url([], "https://evil.example") == ""
