"""The ACME server with its real validators: dns-01 (wildcards too) and http-01 for DNS
names, resolved through pebble-challtestsrv as the configured resolver
(``[acme] dns_resolver`` / ``--acme-dns-resolver``), and a failing dns-01 whose
error the challenge keeps."""

from __future__ import annotations

import base64
import hashlib
import shutil
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.jose import b64url_encode, jwk_from_public_key, jwk_thumbprint
from tests.conftest import RunningServer

from .acme_helpers import ACMEClient, acme_client, acme_quart_fixture, new_key  # noqa: F401
from .test_acme_certbot import http01_responder

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]
pytestmark = pytest.mark.skipif(
    shutil.which("pebble-challtestsrv") is None,
    reason="pebble-challtestsrv (Debian pebble) is not installed",
)


def txt_value(acme: ACMEClient, token: str) -> str:
    thumbprint = jwk_thumbprint(jwk_from_public_key(acme.key.public_key()))
    digest = hashlib.sha256(f"{token}.{thumbprint}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csr_for(names: list[str]) -> str:
    key = new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return b64url_encode(csr.public_bytes(Encoding.DER))


async def challenges_of(acme: ACMEClient, order: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = []
    for url in order["authorizations"]:
        authz = (await acme.get(url)).json()
        found.append({**next(c for c in authz["challenges"] if c["type"] == kind), "authz": url})
    return found


async def test_dns01_issues_a_wildcard(
    acme_quart: RunningServer, challtestsrv: ChallTestSrv
) -> None:
    acme_quart.authority.acme.configure(dns_resolver=challtestsrv.dns_resolver)
    names = ["*.w.devid.test", "w.devid.test"]
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        r = await acme.new_order(*[("dns", n) for n in names])
        url, order = r.headers["location"], r.json()
        found = await challenges_of(acme, order, "dns-01")
        for challenge in found:  # both authorizations name w.devid.test
            challtestsrv.set_txt(
                "_acme-challenge.w.devid.test", txt_value(acme, challenge["token"])
            )
        for challenge in found:
            await acme.post(challenge["url"], {})
        for challenge in found:
            assert (await acme.wait_for(challenge["authz"], ["valid", "invalid"]))[
                "status"
            ] == "valid"
        await acme.post(order["finalize"], {"csr": csr_for(names)})
        done = await acme.wait_for(url, ["valid"])
        leaf = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)


async def test_http01_for_a_dns_name_through_the_resolver(
    acme_quart: RunningServer, challtestsrv: ChallTestSrv
) -> None:
    with http01_responder() as (port, answers):
        acme_quart.authority.acme.configure(
            http01_port=port, dns_resolver=challtestsrv.dns_resolver
        )
        async with acme_client(acme_quart) as acme:
            await acme.new_account()
            r = await acme.new_order(("dns", "h.devid.test"))  # A -> 127.0.0.1 by default
            order = r.json()
            (challenge,) = await challenges_of(acme, order, "http-01")
            thumbprint = jwk_thumbprint(jwk_from_public_key(acme.key.public_key()))
            answers[challenge["token"]] = f"{challenge['token']}.{thumbprint}"
            await acme.post(challenge["url"], {})
            authz = await acme.wait_for(challenge["authz"], ["valid", "invalid"])
    assert authz["status"] == "valid", authz


async def test_a_wrong_txt_record_makes_the_challenge_invalid_with_its_error(
    acme_quart: RunningServer, challtestsrv: ChallTestSrv
) -> None:
    acme_quart.authority.acme.configure(dns_resolver=challtestsrv.dns_resolver)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        order = (await acme.new_order(("dns", "wrong.devid.test"))).json()
        (challenge,) = await challenges_of(acme, order, "dns-01")
        challtestsrv.set_txt("_acme-challenge.wrong.devid.test", "not-the-digest")
        await acme.post(challenge["url"], {})
        authz = await acme.wait_for(challenge["authz"], ["valid", "invalid"])
    assert authz["status"] == "invalid"
    shown = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    assert shown["status"] == "invalid"
    assert shown["error"]["type"].startswith("urn:ietf:params:acme:error:")
    assert "wrong.devid.test" in shown["error"]["detail"]


async def test_a_failed_http01_never_shows_the_client_what_the_target_served(
    acme_quart: RunningServer, challtestsrv: ChallTestSrv
) -> None:
    """An account holder points http-01 at an internal page: the challenge turns
    invalid, and its error (all the client ever sees) carries none of the page."""
    secret = "internal-admin-console: password=hunter2"
    with http01_responder() as (port, answers):
        acme_quart.authority.acme.configure(
            http01_port=port, dns_resolver=challtestsrv.dns_resolver
        )
        async with acme_client(acme_quart) as acme:
            await acme.new_account()
            order = (await acme.new_order(("dns", "probe.devid.test"))).json()
            (challenge,) = await challenges_of(acme, order, "http-01")
            answers[challenge["token"]] = secret
            await acme.post(challenge["url"], {})
            authz = await acme.wait_for(challenge["authz"], ["valid", "invalid"])
            seen = (await acme.get(challenge["url"])).text
    assert authz["status"] == "invalid"
    shown = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert shown["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert "not the key authorization" in shown["error"]["detail"]
    for text in (str(authz), seen):
        assert "hunter2" not in text and "internal-admin-console" not in text
