"""lego (Debian, Go) against ``devid serve``: http-01, tls-alpn-01 and dns-01 (a wildcard
too), renewal and revocation, and a challenge that cannot succeed.

lego serves http-01 and tls-alpn-01 itself on the ports the server was told to connect
to; for dns-01 it runs the challtestsrv hook script (``--dns exec``) and checks the
record on the same mock DNS. Each test keeps lego's state (``--path``) in its own
temporary directory, so each registers its own account.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from engine.acme.jws import sign_request

from .support import (
    Server,
    client_env,
    dns_names,
    load_certificate,
    need,
    openssl_verify,
    run,
    shown,
)

pytestmark = need("lego", "openssl", "pebble-challtestsrv")

EMAIL = "ops@example.com"
CONNECTION = "urn:ietf:params:acme:error:connection"


class Lego:
    """Runs ``lego --path DIR ...`` against the server, trusting only its root."""

    def __init__(self, server: Server, workdir: Path, **env: str) -> None:
        self.server = server
        self.workdir = workdir
        self.path = workdir / "lego"
        self.env = client_env(LEGO_CA_CERTIFICATES=str(server.root), **env)

    def __call__(self, *args: str, check: bool = True) -> str:
        argv = ["lego", "--server", self.server.directory(), "--accept-tos", "--email", EMAIL]
        argv += ["--path", str(self.path), *args]
        result = run(argv, self.env, self.workdir, timeout=60)
        # lego logs to stderr; both streams are kept for the assertion messages.
        output = result.stdout + result.stderr
        if check:
            assert result.returncode == 0, shown(result)
        else:
            assert result.returncode != 0, shown(result)
        return output

    def http01(self) -> tuple[str, ...]:
        return ("--http", "--http.port", f"127.0.0.1:{self.server.http01_port}")

    def certificate(self, name: str) -> Path:
        return self.path / "certificates" / f"{name.replace('*', '_')}.crt"

    def verify(self, name: str) -> int:
        """Check the saved chain with openssl; return the leaf's serial."""
        leaf = self.certificate(name)
        issuer = leaf.with_name(leaf.name.replace(".crt", ".issuer.crt"))
        openssl_verify(self.server.root, issuer, leaf)
        return load_certificate(leaf).serial_number

    def account(self) -> tuple[Any, str]:
        """lego's account key and account URL, as it stored them."""
        host = self.server.url.removeprefix("https://").replace(":", "_")
        folder = self.path / "accounts" / host / EMAIL
        key = load_pem_private_key((folder / "keys" / f"{EMAIL}.key").read_bytes(), None)
        kid = json.loads((folder / "account.json").read_text())["registration"]["uri"]
        return key, str(kid)


def post_as_get(
    server: Server, key: Any, kid: str, url: str, payload: Any = None
) -> httpx.Response:
    """A signed POST to the server as lego's account (POST-as-GET without a payload)."""
    with httpx.Client(verify=server.tls(), timeout=10) as http:
        directory = http.get(server.directory()).json()
        nonce = http.head(directory["newNonce"]).headers["replay-nonce"]
        body = sign_request(key, url, payload, nonce=nonce, kid=kid)
        return http.post(url, json=body, headers={"content-type": "application/jose+json"})


def test_http01_issues_renews_and_revokes(server: Server, tmp_path: Path) -> None:
    lego = Lego(server, tmp_path)
    name = "web.devid.test"

    lego("--domains", name, *lego.http01(), "run")
    first = lego.verify(name)
    assert dns_names(load_certificate(lego.certificate(name))) == [name]

    # The certificate lives a day, so it is due for renewal under lego's default 30 days.
    lego("--domains", name, *lego.http01(), "renew", "--no-random-sleep")
    renewed = lego.verify(name)
    assert renewed != first

    output = lego("--domains", name, "revoke", "--reason", "4")
    assert "Certificate was revoked." in output, output
    assert renewed in server.crl_serials()
    assert first not in server.crl_serials()
    server.assert_clean_log()


def test_tls_alpn01_issues(server: Server, tmp_path: Path) -> None:
    lego = Lego(server, tmp_path)
    name = "alpn.devid.test"
    tls = ("--tls", "--tls.port", f"127.0.0.1:{server.tlsalpn01_port}")

    output = lego("--domains", name, *tls, "run")

    assert "acme: use tls-alpn-01 solver" in output, output
    lego.verify(name)
    assert dns_names(load_certificate(lego.certificate(name))) == [name]
    server.assert_clean_log()


def test_dns01_issues_a_wildcard_and_its_base_name(server: Server, tmp_path: Path) -> None:
    hook = server.dns.write_dns_hook(tmp_path / "dns-hook")
    # EXEC_SEQUENCE_INTERVAL: lego solves the two authorizations of one name one after
    # the other and waits 60 s between them by default.
    lego = Lego(
        server,
        tmp_path,
        EXEC_PATH=str(hook),
        EXEC_SEQUENCE_INTERVAL="1",
        EXEC_POLLING_INTERVAL="1",
        EXEC_PROPAGATION_TIMEOUT="30",
    )
    names = ["*.dns.devid.test", "dns.devid.test"]
    dns = ("--dns", "exec", "--dns.resolvers", server.dns.dns_address, "--dns.disable-cp")

    output = lego("--domains", names[0], "--domains", names[1], *dns, "run")

    assert "acme: use dns-01 solver" in output, output
    lego.verify(names[0])
    assert dns_names(load_certificate(lego.certificate(names[0]))) == names
    server.assert_clean_log()


def test_http01_with_nothing_answering_ends_invalid(server: Server, tmp_path: Path) -> None:
    """The name resolves to 127.0.0.2, where no responder listens (lego's is on
    127.0.0.1): the server cannot connect, retries, and the authorization ends
    invalid with a connection problem that lego reports."""
    name = "down.devid.test"
    server.dns.add_a(name, ["127.0.0.2"])
    lego = Lego(server, tmp_path)

    output = lego("--domains", name, *lego.http01(), "run", check=False)

    assert "Could not obtain certificates" in output, output
    assert f"[{name}] acme: error: 400 :: {CONNECTION}" in output, output
    assert f"127.0.0.2:{server.http01_port}" in output, output
    assert not lego.certificate(name).exists()

    # The server's side: the authorization and its challenge are invalid, with the error.
    match = re.search(rf"\[{re.escape(name)}\] AuthURL: (\S+)", output)
    assert match, output
    key, kid = lego.account()
    authz = post_as_get(server, key, kid, match.group(1))
    assert authz.status_code == 200, authz.text
    body = authz.json()
    assert body["status"] == "invalid", body
    (challenge,) = [c for c in body["challenges"] if c["type"] == "http-01"]
    assert challenge["status"] == "invalid", challenge
    assert challenge["error"]["type"] == CONNECTION, challenge
    assert "127.0.0.2" in challenge["error"]["detail"], challenge

    # lego then tries to deactivate it; an invalid authorization cannot be: a 4xx problem.
    refused = post_as_get(server, key, kid, match.group(1), {"status": "deactivated"})
    assert 400 <= refused.status_code < 500, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")

    # The failed order is invalid, so the account's order list leaves it out (RFC 8555 7.1.2.1);
    # this account placed no other order.
    orders = post_as_get(server, key, kid, f"{kid}/orders")
    assert orders.status_code == 200, orders.text
    assert orders.json()["orders"] == []
    server.assert_clean_log()
