"""ACME resources through the real host: accounts, orders, finalize, certificates,
revocation, keyChange, renewal information, expiry.

Challenges here are validated by a stand-in validator (the network validators
have their own tests, and test_acme_certbot.py runs the real http-01 one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.caclient import make_csr
from engine.acme.effects import StartValidation
from engine.acme.jws import sign_flattened
from engine.acme.problems import ACMEProblem
from engine.acme.renewal import cert_id
from engine.assurance import Assurance
from engine.jose import b64url_encode, jwk_from_public_key
from engine.names import SAN
from hosts.validation import ValidationConfig
from tests.conftest import CA, RunningServer

from .acme_helpers import (
    ACMEClient,
    acme_client,
    acme_quart_fixture,  # noqa: F401
    acme_server_fixture,  # noqa: F401
    acme_server_for,
    assert_problem,
    edit_provisioner,
    new_key,
)


async def _valid(job: StartValidation, config: ValidationConfig) -> None:
    return None


def accept_all(server: RunningServer) -> None:
    server.authority.acme.validator = _valid


def csr_der(names: list[str], common_name: str | None = None) -> tuple[Any, bytes]:
    """A new key and a DER CSR naming *names* as SANs (and *common_name*, if given)."""
    key = new_key()
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    sans = [SAN.parse(n).to_general_name() for n in names]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(Encoding.DER)


async def authorize(acme: ACMEClient, order: dict[str, Any], kind: str = "http-01") -> None:
    for url in order["authorizations"]:
        authz = (await acme.get(url)).json()
        if authz["status"] == "valid":
            continue
        challenge = next(c for c in authz["challenges"] if c["type"] == kind)
        r = await acme.post(challenge["url"], {})
        assert r.status_code == 200, r.text
        await acme.wait_for(url, ["valid"])


async def ordered(
    acme: ACMEClient, *identifiers: tuple[str, str], **extra: Any
) -> tuple[str, dict[str, Any]]:
    r = await acme.new_order(*identifiers, **extra)
    assert r.status_code == 201, r.text
    return r.headers["location"], r.json()


async def challenge_answered(acme: ACMEClient, name: str) -> tuple[str, str, Any]:
    """A new account orders *name* and answers its first challenge: (authorization URL,
    challenge URL, the challenge POST's response)."""
    await acme.new_account()
    _, order = await ordered(acme, ("dns", name))
    authz_url = order["authorizations"][0]
    challenge = (await acme.get(authz_url)).json()["challenges"][0]
    answered = await acme.post(challenge["url"], {})
    return authz_url, challenge["url"], answered


async def issue(acme: ACMEClient, *names: str) -> tuple[str, dict[str, Any], x509.Certificate]:
    """Order, authorize, finalize and download; returns (order URL, order, leaf)."""
    url, order = await ordered(acme, *[("dns", n) for n in names])
    await authorize(acme, order)
    await acme.wait_for(url, ["ready"])
    _, der = csr_der(list(names))
    r = await acme.post(order["finalize"], {"csr": b64url_encode(der)})
    assert r.status_code == 200, r.text
    order = await acme.wait_for(url, ["valid"])
    cert = await acme.get(order["certificate"])
    assert cert.status_code == 200, cert.text
    assert cert.headers["content-type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(cert.content)
    # The leaf, then its issuer up to (not including) the root, each signed by the next,
    # every one in the PEM form cryptography writes.
    assert cert.content.decode() == "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)
    assert len(chain) >= 2
    for child, parent in itertools.pairwise(chain):
        child.verify_directly_issued_by(parent)
    return url, order, chain[0]


# --- directory and accounts ------------------------------------------------------------


async def test_directory_lists_every_resource_and_its_meta(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        d = acme.directory
    base = f"{acme_quart.url}/acme/acme"
    assert d["newNonce"] == f"{base}/new-nonce"
    assert d["newAccount"] == f"{base}/new-account"
    assert d["newOrder"] == f"{base}/new-order"
    assert d["revokeCert"] == f"{base}/revoke-cert"
    assert d["keyChange"] == f"{base}/key-change"
    assert d["renewalInfo"] == f"{base}/renewal-info"
    assert d["meta"] == {"externalAccountRequired": False}


async def test_new_account_then_the_same_key_finds_it(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        created = await acme.new_account(contact=["mailto:ops@example.com"])
        assert created.status_code == 201
        body = created.json()
        assert body["status"] == "valid"
        assert body["contact"] == ["mailto:ops@example.com"]
        assert body["orders"] == created.headers["location"] + "/orders"
        again = await acme.new_account()
        only = await acme.new_account(onlyReturnExisting=True)
    assert again.status_code == only.status_code == 200
    assert again.headers["location"] == only.headers["location"] == created.headers["location"]


async def test_only_return_existing_without_an_account(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        r = await acme.new_account(onlyReturnExisting=True)
    assert_problem(r, 400, "accountDoesNotExist")


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        (["tel:+15551234"], "unsupportedContact"),
        (["mailto:"], "invalidContact"),
        (["mailto:a@b@example.com"], "invalidContact"),
        (["mailto:ops@example.com?subject=x"], "invalidContact"),
        (["mailto:a@example.com,b@example.com"], "invalidContact"),
        ([f"mailto:u{i}@example.com" for i in range(11)], "invalidContact"),
        ("mailto:ops@example.com", "malformed"),
    ],
)
async def test_contacts_are_checked(acme_quart: RunningServer, contact: Any, problem: str) -> None:
    async with acme_client(acme_quart) as acme:
        r = await acme.new_account(contact=contact)
    assert_problem(r, 400, problem)


async def test_account_contact_update_and_deactivation(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        assert acme.kid is not None
        read = await acme.get(acme.kid)
        assert read.status_code == 200 and read.json()["contact"] == []
        updated = await acme.post(acme.kid, {"contact": ["mailto:new@example.com"]})
        assert updated.json()["contact"] == ["mailto:new@example.com"]
        bad = await acme.post(acme.kid, {"status": "revoked"})
        assert_problem(bad, 400, "malformed")
        gone = await acme.post(acme.kid, {"status": "deactivated"})
        assert gone.json()["status"] == "deactivated"
        refused = await acme.get(acme.kid)
        assert_problem(refused, 403, "unauthorized")
        found = await acme.new_account()
        assert_problem(found, 403, "unauthorized")


async def test_an_account_cannot_touch_another_account(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as alice, acme_client(acme_quart) as mallory:
        await alice.new_account()
        await mallory.new_account()
        assert alice.kid is not None
        r = await mallory.post(alice.kid, {"status": "deactivated"})
        assert_problem(r, 403, "unauthorized")
        _, order = await ordered(alice, ("dns", "alice.example.com"))
        r = await mallory.get(order["authorizations"][0])
        assert_problem(r, 403, "unauthorized")
        r = await mallory.post(alice.kid + "/orders", None)
        assert_problem(r, 403, "unauthorized")


async def test_orders_url_lists_the_accounts_orders(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        first, _ = await ordered(acme, ("dns", "one.example.com"))
        second, _ = await ordered(acme, ("dns", "two.example.com"))
        listing = await acme.get(acme.kid + "/orders")  # type: ignore[operator]
    assert listing.status_code == 200
    assert set(listing.json()["orders"]) == {first, second}


# --- external account binding ------------------------------------------------------------


EAB_KEY = b"0123456789abcdef0123456789abcdef"


def eab(acme: ACMEClient, kid: str = "team-a", secret: bytes = EAB_KEY) -> dict[str, str]:
    url = acme.directory["newAccount"]
    protected = b64url_encode(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    payload = b64url_encode(json.dumps(jwk_from_public_key(acme.key.public_key())).encode())
    mac = hmac.new(secret, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64url_encode(mac)}


@pytest.fixture
async def eab_server(ca: CA, nursery: Any) -> Any:
    edit_provisioner(
        ca.data_dir,
        "acme",
        require_eab=True,
        eab_keys={"team-a": b64url_encode(EAB_KEY)},
    )
    running, stop = await acme_server_for(ca, nursery, "quart")
    yield running
    await stop.close()


async def test_eab_is_required_and_checked(eab_server: RunningServer) -> None:
    async with acme_client(eab_server) as acme:
        assert acme.directory["meta"]["externalAccountRequired"] is True
        assert_problem(await acme.new_account(), 400, "externalAccountRequired")
        wrong = eab(acme, secret=b"x" * 32)
        assert_problem(await acme.new_account(externalAccountBinding=wrong), 403, "unauthorized")
        unknown = eab(acme, kid="team-b")
        assert_problem(await acme.new_account(externalAccountBinding=unknown), 403, "unauthorized")
        other_key = ACMEClient(acme.http, acme.base, key=new_key())
        other_key.directory = acme.directory
        stolen = eab(other_key)  # binds another account key
        assert_problem(await acme.new_account(externalAccountBinding=stolen), 403, "unauthorized")
        r = await acme.new_account(externalAccountBinding=eab(acme))
    assert r.status_code == 201, r.text
    account_id = r.headers["location"].rsplit("/", 1)[1]
    stored = eab_server.authority.stores.acme.acme_account("acme", account_id)
    assert stored is not None and stored.eab_kid == "team-a"


async def test_eab_must_use_hs256(eab_server: RunningServer) -> None:
    async with acme_client(eab_server) as acme:
        binding = eab(acme)
        header = json.loads(base64.urlsafe_b64decode(binding["protected"] + "=="))
        header["alg"] = "HS512"
        binding["protected"] = b64url_encode(json.dumps(header).encode())
        r = await acme.new_account(externalAccountBinding=binding)
    body = assert_problem(r, 400, "badSignatureAlgorithm")
    assert body["algorithms"] == ["HS256"]


# --- orders --------------------------------------------------------------------------------


async def test_new_order_has_one_authorization_per_identifier(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        _, order = await ordered(
            acme, ("dns", "WWW.Example.com"), ("dns", "*.example.com"), ("ip", "127.0.0.1")
        )
        assert order["status"] == "pending"
        assert order["identifiers"] == [
            {"type": "dns", "value": "www.example.com"},
            {"type": "dns", "value": "*.example.com"},
            {"type": "ip", "value": "127.0.0.1"},
        ]
        authzs = [(await acme.get(u)).json() for u in order["authorizations"]]
    types = [sorted(c["type"] for c in a["challenges"]) for a in authzs]
    assert types == [["dns-01", "http-01", "tls-alpn-01"], ["dns-01"], ["http-01", "tls-alpn-01"]]
    assert authzs[1]["identifier"] == {"type": "dns", "value": "example.com"}
    assert authzs[1]["wildcard"] is True
    assert all(len(c["token"]) >= 43 for a in authzs for c in a["challenges"])


@pytest.mark.parametrize(
    ("identifiers", "problem"),
    [
        ([{"type": "email", "value": "a@example.com"}], "unsupportedIdentifier"),
        ([{"type": "dns", "value": "10.0.0.1"}], "rejectedIdentifier"),
        ([{"type": "dns", "value": "bad_name..example"}], "rejectedIdentifier"),
        ([{"type": "ip", "value": "192.0.2.1"}], "rejectedIdentifier"),  # not an allowed range
        ([{"type": "permanent-identifier", "value": "abc"}], "unsupportedIdentifier"),
        ([], "malformed"),
        ("www.example.com", "malformed"),
    ],
)
async def test_new_order_refuses_identifiers_the_policy_does_not_allow(
    acme_quart: RunningServer, identifiers: Any, problem: str
) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        r = await acme.post(acme.directory["newOrder"], {"identifiers": identifiers})
    assert_problem(r, 400, problem)


async def test_several_refused_identifiers_are_subproblems(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        r = await acme.new_order(
            ("ip", "192.0.2.1"), ("dns", "ok.example.com"), ("ip", "198.51.100.1")
        )
    body = assert_problem(r, 400, "rejectedIdentifier")
    assert [s["identifier"]["value"] for s in body["subproblems"]] == ["192.0.2.1", "198.51.100.1"]


async def test_allowed_domains_are_suffixes(ca: CA, nursery: Any) -> None:
    edit_provisioner(ca.data_dir, "acme", allowed_domains=["example.com"])
    server, stop = await acme_server_for(ca, nursery, "quart")
    try:
        async with acme_client(server) as acme:
            await acme.new_account()
            assert (await acme.new_order(("dns", "a.b.example.com"))).status_code == 201
            assert (await acme.new_order(("dns", "example.com"))).status_code == 201
            refused = await acme.new_order(("dns", "notexample.com"))
        assert_problem(refused, 400, "rejectedIdentifier")
    finally:
        await stop.close()


async def test_order_validity_window_is_checked(acme_quart: RunningServer) -> None:
    now = datetime.now(UTC)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        long = await acme.new_order(
            ("dns", "w.example.com"), notAfter=(now + timedelta(days=400)).isoformat()
        )
        backwards = await acme.new_order(
            ("dns", "w.example.com"),
            notBefore=(now + timedelta(hours=2)).isoformat(),
            notAfter=(now + timedelta(hours=1)).isoformat(),
        )
        garbage = await acme.new_order(("dns", "w.example.com"), notAfter="tomorrow")
    for r in (long, backwards, garbage):
        assert_problem(r, 400, "malformed")


async def test_requested_not_after_is_honoured(acme_quart: RunningServer) -> None:
    accept_all(acme_quart)
    not_after = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(
            acme, ("dns", "short.example.com"), notAfter=not_after.isoformat()
        )
        assert order["notAfter"] == not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        await authorize(acme, order)
        _, der = csr_der(["short.example.com"])
        await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        done = await acme.wait_for(url, ["valid"])
        leaf = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)[0]
    assert leaf.not_valid_after_utc == not_after


async def test_an_expired_order_is_invalid_and_cannot_be_finalized(
    acme_quart: RunningServer,
) -> None:
    accept_all(acme_quart)
    store = acme_quart.authority.stores.acme
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "late.example.com"))
        authz_url = order["authorizations"][0]
        challenge_url = (await acme.get(authz_url)).json()["challenges"][0]["url"]
        # Let the order and its authorization expire (the store holds the truth).
        order_id, authz_id = url.rsplit("/", 1)[1], authz_url.rsplit("/", 1)[1]
        past = datetime.now(UTC) - timedelta(seconds=1)
        stored_order = store.acme_order("acme", order_id)
        stored_authz = store.acme_authorization("acme", authz_id)
        from engine.acme.effects import Write

        assert store.acme_write(
            Write(
                orders=(attrs.evolve(stored_order, expires_at=past),),
                authorizations=(attrs.evolve(stored_authz, expires_at=past),),
            )
        )
        view = (await acme.get(url)).json()
        assert view["status"] == "invalid"
        assert "expired" in view["error"]["detail"]
        assert (await acme.get(authz_url)).json()["status"] == "expired"
        assert_problem(await acme.post(challenge_url, {}), 400, "malformed")
        _, der = csr_der(["late.example.com"])
        refused = await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        listing = (await acme.get(acme.kid + "/orders")).json()  # type: ignore[operator]
    assert_problem(refused, 403, "orderNotReady")
    assert url not in listing["orders"]


# --- finalize --------------------------------------------------------------------------------


async def test_finalize_before_the_order_is_ready(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        _, order = await ordered(acme, ("dns", "early.example.com"))
        _, der = csr_der(["early.example.com"])
        r = await acme.post(order["finalize"], {"csr": b64url_encode(der)})
    assert_problem(r, 403, "orderNotReady")


@pytest.mark.parametrize(
    ("names", "common_name"),
    [
        (["a.example.com"], None),  # one missing
        (["a.example.com", "b.example.com", "c.example.com"], None),  # one extra
        (["a.example.com", "b.example.com"], "c.example.com"),  # extra in the CN
        (["a.example.com", "10.1.2.3"], None),
    ],
)
async def test_finalize_with_names_that_are_not_the_orders(
    acme_quart: RunningServer, names: list[str], common_name: str | None
) -> None:
    accept_all(acme_quart)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "a.example.com"), ("dns", "b.example.com"))
        await authorize(acme, order)
        await acme.wait_for(url, ["ready"])
        before = acme_quart.authority.stores.certificates.count_certificates()
        _, der = csr_der(names, common_name)
        refused = await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        still = (await acme.get(url)).json()
    assert_problem(refused, 400, "badCSR")
    assert still["status"] == "ready"  # a refused CSR leaves the order to try again
    assert acme_quart.authority.stores.certificates.count_certificates() == before


async def test_finalize_refuses_the_account_key_and_garbage(acme_quart: RunningServer) -> None:
    accept_all(acme_quart)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "k.example.com"))
        await authorize(acme, order)
        await acme.wait_for(url, ["ready"])
        own = make_csr(acme.key, "k.example.com", ["k.example.com"])  # type: ignore[arg-type]
        account_key = await acme.post(
            order["finalize"], {"csr": b64url_encode(own.public_bytes(Encoding.DER))}
        )
        garbage = await acme.post(order["finalize"], {"csr": b64url_encode(b"\x30\x03junk")})
        missing = await acme.post(order["finalize"], {})
    assert_problem(account_key, 400, "badCSR")
    assert_problem(garbage, 400, "badCSR")
    assert_problem(missing, 400, "malformed")


async def test_issued_certificate_names_come_from_the_order(acme_server: RunningServer) -> None:
    accept_all(acme_server)
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        url, order, leaf = await issue(acme, "svc.example.com", "api.example.com")
        again = await acme.post(order["finalize"], {"csr": "AA"})
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["api.example.com", "svc.example.com"]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.issuer == acme_server.authority.issuers["tls"].certificate.subject
    assert Assurance.of(leaf) is Assurance.DOMAIN_VALIDATED
    assert_problem(again, 403, "orderNotReady")
    record = acme_server.authority.stores.certificates.get_certificate(
        format(leaf.serial_number, "x")
    )
    assert record is not None and record.provisioner_type == "ACME"
    assert record.evidence["order"] == url.rsplit("/", 1)[1]


async def test_a_common_name_that_is_ordered_is_kept(acme_quart: RunningServer) -> None:
    accept_all(acme_quart)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "cn.example.com"))
        await authorize(acme, order)
        await acme.wait_for(url, ["ready"])
        _, der = csr_der(["cn.example.com"], "CN.Example.com")
        await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        done = await acme.wait_for(url, ["valid"])
        leaf = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)[0]
    assert leaf.subject.rfc4514_string() == "CN=cn.example.com"


async def test_only_the_ordering_account_downloads_the_certificate(
    acme_quart: RunningServer,
) -> None:
    accept_all(acme_quart)
    async with acme_client(acme_quart) as alice, acme_client(acme_quart) as bob:
        await alice.new_account()
        await bob.new_account()
        _, order, _ = await issue(alice, "mine.example.com")
        r = await bob.get(order["certificate"])
    assert_problem(r, 403, "unauthorized")


# --- revocation ------------------------------------------------------------------------------


async def test_revocation_by_the_ordering_account(acme_server: RunningServer) -> None:
    accept_all(acme_server)
    async with acme_client(acme_server) as acme, acme_client(acme_server) as other:
        await acme.new_account()
        await other.new_account()
        _, _, leaf = await issue(acme, "rev.example.com")
        payload = {"certificate": b64url_encode(leaf.public_bytes(Encoding.DER)), "reason": 4}
        stranger = await other.post(acme.directory["revokeCert"], payload)
        bad_reason = await acme.post(acme.directory["revokeCert"], {**payload, "reason": 7})
        revoked = await acme.post(acme.directory["revokeCert"], payload)
        again = await acme.post(acme.directory["revokeCert"], payload)
    assert_problem(stranger, 403, "unauthorized")
    assert_problem(bad_reason, 400, "badRevocationReason")
    assert revoked.status_code == 200, revoked.text
    assert revoked.headers["replay-nonce"]
    assert_problem(again, 400, "alreadyRevoked")
    record = acme_server.authority.stores.certificates.get_certificate(
        format(leaf.serial_number, "x")
    )
    assert record is not None and record.status == "revoked"
    crl = x509.load_der_x509_crl(acme_server.authority.revocation.crl("tls"))
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None


async def test_revocation_with_the_certificates_own_key(acme_quart: RunningServer) -> None:
    accept_all(acme_quart)
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "own.example.com"))
        await authorize(acme, order)
        await acme.wait_for(url, ["ready"])
        cert_key, der = csr_der(["own.example.com"])
        await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        done = await acme.wait_for(url, ["valid"])
        leaf = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)[0]
        payload = {"certificate": b64url_encode(leaf.public_bytes(Encoding.DER))}
        # Signed with jwk = some other key: refused; with the certificate's key: revoked.
        stranger = await acme.post(acme.directory["revokeCert"], payload, key=new_key())
        revoked = await acme.post(acme.directory["revokeCert"], payload, key=cert_key)
    assert_problem(stranger, 403, "unauthorized")
    assert revoked.status_code == 200, revoked.text
    record = acme_quart.authority.stores.certificates.get_certificate(
        format(leaf.serial_number, "x")
    )
    assert record is not None and record.status == "revoked"


async def test_certificates_of_other_provisioners_are_not_revoked_here(
    acme_quart: RunningServer,
) -> None:
    from .helpers import issue as issue_jwk

    issued = await issue_jwk(acme_quart, "jwk.example.com")
    async with acme_client(acme_quart) as acme:
        payload = {"certificate": b64url_encode(issued.der)}
        r = await acme.post(acme.directory["revokeCert"], payload, key=issued.key)
    assert_problem(r, 403, "unauthorized")


# --- key change ------------------------------------------------------------------------------


async def _key_change(acme: ACMEClient, new: Any, *, account: str | None = None) -> httpx.Response:
    url = acme.directory["keyChange"]
    inner = sign_flattened(
        new,
        {"account": account or acme.kid, "oldKey": jwk_from_public_key(acme.key.public_key())},
        {"jwk": jwk_from_public_key(new.public_key()), "url": url},
    )
    return await acme.post(url, inner)


async def test_key_change_rolls_the_account_over(acme_server: RunningServer) -> None:
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        kid = acme.kid
        new = new_key()
        r = await _key_change(acme, new)
        assert r.status_code == 200, r.text
        old_key = acme.key
        assert_problem(await acme.new_order(("dns", "x.example.com")), 400, "malformed")
        acme.key = new
        assert (await acme.new_order(("dns", "x.example.com"))).status_code == 201
        acme.kid, acme.key = None, old_key
        assert_problem(await acme.new_account(onlyReturnExisting=True), 400, "accountDoesNotExist")
        acme.key = new
        found = await acme.new_account(onlyReturnExisting=True)
    assert found.headers["location"] == kid


async def test_key_change_refusals(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme, acme_client(acme_quart) as other:
        await acme.new_account()
        await other.new_account()
        taken = await _key_change(acme, other.key)
        assert taken.status_code == 409
        assert taken.headers["location"] == other.kid
        wrong_account = await _key_change(acme, new_key(), account=other.kid)
        url = acme.directory["keyChange"]
        new = new_key()
        inner = sign_flattened(
            new,
            {"account": acme.kid, "oldKey": jwk_from_public_key(acme.key.public_key())},
            {"jwk": jwk_from_public_key(new.public_key()), "url": acme.directory["newOrder"]},
        )
        wrong_url = await acme.post(url, inner)
        forged = dict(inner, signature=b64url_encode(b"\1" * 64))
        bad_signature = await acme.post(url, forged)
    assert_problem(wrong_account, 403, "unauthorized")
    assert_problem(wrong_url, 400, "malformed")
    assert_problem(bad_signature, 400, "malformed")


# --- renewal information (RFC 9773) ----------------------------------------------------------


async def test_renewal_info_suggests_the_last_third(acme_server: RunningServer) -> None:
    accept_all(acme_server)
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        _, _, leaf = await issue(acme, "ari.example.com")
        url = f"{acme.directory['renewalInfo']}/{cert_id(leaf)}"
        r = await acme.http.get(url)
        assert r.status_code == 200, r.text
        assert int(r.headers["retry-after"]) > 0
        window = r.json()["suggestedWindow"]
        start = datetime.fromisoformat(window["start"])
        end = datetime.fromisoformat(window["end"])
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert leaf.not_valid_before_utc + lifetime / 2 < start < end < leaf.not_valid_after_utc
        await acme.post(
            acme.directory["revokeCert"],
            {"certificate": b64url_encode(leaf.public_bytes(Encoding.DER))},
        )
        revoked = (await acme.http.get(url)).json()["suggestedWindow"]
        unknown = await acme.http.get(f"{acme.directory['renewalInfo']}/AAAA.AQ")
        garbage = await acme.http.get(f"{acme.directory['renewalInfo']}/not-a-cert-id")
    assert datetime.fromisoformat(revoked["end"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert_problem(unknown, 404, "malformed", nonce=False)
    assert_problem(garbage, 400, "malformed", nonce=False)


# --- authorizations --------------------------------------------------------------------------


async def test_an_authorization_can_be_deactivated(acme_quart: RunningServer) -> None:
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "d.example.com"))
        authz = order["authorizations"][0]
        r = await acme.post(authz, {"status": "deactivated"})
        assert r.status_code == 200 and r.json()["status"] == "deactivated"
        again = await acme.post(authz, {"status": "deactivated"})
        view = (await acme.get(url)).json()
    assert_problem(again, 400, "malformed")
    assert view["status"] == "invalid"


# --- the background validation ---------------------------------------------------------------


async def test_validation_retries_with_back_off_until_it_succeeds(
    acme_server: RunningServer,
) -> None:
    attempts: list[float] = []

    async def flaky(job: StartValidation, config: ValidationConfig) -> None:
        import trio

        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise ACMEProblem("connection", "nobody listening yet")

    acme_server.authority.acme.validator = flaky
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        _, order = await ordered(acme, ("dns", "retry.example.com"))
        authz = (await acme.get(order["authorizations"][0])).json()
        challenge = authz["challenges"][0]
        started = await acme.post(challenge["url"], {})
        assert started.json()["status"] == "processing"
        assert started.headers["retry-after"] == "1"
        assert f'<{order["authorizations"][0]}>;rel="up"' in started.headers["link"]
        again = await acme.post(challenge["url"], {})  # a repeated response changes nothing
        assert again.json()["status"] in ("processing", "valid")
        done = await acme.wait_for(order["authorizations"][0], ["valid", "invalid"])
    assert done["status"] == "valid"
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[1] > gaps[0] * 1.5  # the delay doubles
    (shown,) = done["challenges"]
    assert shown["status"] == "valid" and "validated" in shown


async def test_validation_that_keeps_failing_records_the_error(acme_quart: RunningServer) -> None:
    async def refused(job: StartValidation, config: ValidationConfig) -> None:
        raise ACMEProblem("incorrectResponse", f"wrong key authorization for {job.token}")

    acme_quart.authority.acme.validator = refused
    async with acme_client(acme_quart) as acme:
        await acme.new_account()
        url, order = await ordered(acme, ("dns", "fail.example.com"))
        authz_url = order["authorizations"][0]
        challenge = (await acme.get(authz_url)).json()["challenges"][0]
        await acme.post(challenge["url"], {})
        done = await acme.wait_for(authz_url, ["valid", "invalid"])
        order_view = (await acme.get(url)).json()
        challenge_view = (await acme.get(challenge["url"])).json()
    assert done["status"] == "invalid"
    assert challenge_view["status"] == "invalid"
    assert challenge_view["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert order_view["status"] == "invalid"


async def test_unfinished_validations_resume_after_a_restart(
    ca: CA, nursery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A challenge left processing by a stopped server is validated by the next one."""
    import trio

    server, stop = await acme_server_for(ca, nursery, "quart")
    never = trio.Event()

    async def stuck(job: StartValidation, config: ValidationConfig) -> None:
        await never.wait()

    server.authority.acme.validator = stuck
    async with acme_client(server) as acme:
        authz_url, challenge_url, _ = await challenge_answered(acme, "resume.example.com")
        key = acme.key
    await stop.close()

    seen: list[str] = []

    async def accept(job: StartValidation, config: ValidationConfig) -> None:
        seen.append(job.challenge_id)

    monkeypatch.setattr("hosts.service.acme.runner.validate_over_network", accept)
    again, stop_again = await acme_server_for(ca, nursery, "quart")
    try:
        async with acme_client(again, key=key) as acme:
            await acme.new_account(onlyReturnExisting=True)
            done = await acme.wait_for(authz_url.replace(server.url, again.url), ["valid"])
    finally:
        await stop_again.close()
    assert done["status"] == "valid"
    assert seen == [challenge_url.rsplit("/", 1)[1]]
