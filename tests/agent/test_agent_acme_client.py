"""agent.acme and agent.enroll against a small in-test ACME server (httpx.MockTransport).

The fake server is strict where the client could go wrong: single-use nonces,
the JWS url must be the request URL, exactly one of jwk/kid, the signature must
verify with the key the algorithm is pinned to, and device-attest-01 evidence is
checked with engine.tpm (AK signature, extraData = SHA-256(key authorization),
the certified key's Name) before a CSR for that key is accepted. The end-to-end
enrolment against the real server is in test_agent_enroll.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import agent.enroll as enroll_module
from agent.acme import ACCOUNT_KEY_FILE, ACMEClient, ACMEError, load_or_create_account_key
from agent.enroll import TPMSigningKey, device_csr, enroll
from agent.state import AgentError, AgentState
from agent.tpm import TPM, KeyAlgorithm, public_of
from engine.attestation.akcert import identities_of_ak_certificate, permanent_identifier_name
from engine.jose import (
    b64url_decode,
    b64url_encode,
    jwk_from_public_key,
    jwk_thumbprint,
    public_key_from_jwk,
    verify_signature,
)
from engine.tpm import CertifyInfo, TPMTPublic, public_key_from_tpmt, verify_attestation

if TYPE_CHECKING:
    from tests.swtpm import Swtpm

pytest_plugins = ["tests.swtpm"]

BASE = "https://acme.test/acme/devices"
PROBLEM = "urn:ietf:params:acme:error:"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class FakeCA:
    """A root that signs AK certificates and device certificates directly."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Fake Root"))
            .issuer_name(_name("Fake Root"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.root_path = directory / "root.pem"
        self.root_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, public_key: Any, names: list[x509.GeneralName], cn: str = ""
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(_name(cn) if cn else x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=not cn)
            .sign(self.key, hashes.SHA256())
        )


class FakeACME:
    """Just enough of an ACME server for device-attest-01, as a MockTransport handler."""

    def __init__(self, ca: FakeCA) -> None:
        self.ca = ca
        self.nonces: set[str] = set()
        self.counter = 0
        self.accounts: dict[str, Any] = {}  # account URL -> public key
        self.by_thumbprint: dict[str, str] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.authzs: dict[str, dict[str, Any]] = {}
        self.challenges: dict[str, tuple[str, dict[str, Any]]] = {}  # url -> (authz url, body)
        self.attested: dict[str, Any] = {}  # authz url -> attested public key
        self.certs: dict[str, str] = {}
        self.log: list[tuple[str, dict[str, Any], Any]] = []  # (url, protected, payload)
        self.evidence: list[dict[str, Any]] = []
        self.eab_bound: list[str] = []
        # Knobs for the tests.
        self.reject_nonces = 0  # refuse this many good nonces with badNonce
        self.processing_polls = 0  # authz stays "processing" for this many polls
        self.retry_after: str | None = None
        self.valid_authz_on_order = False  # hand out an already valid authorization
        self.issue_for_other_identifier = False

    def url(self, kind: str) -> str:
        self.counter += 1
        return f"{BASE}/{kind}/{self.counter}"

    def nonce(self) -> str:
        self.counter += 1
        value = f"nonce-{self.counter}"
        self.nonces.add(value)
        return value

    def reply(
        self, status: int, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        all_headers = {"Replay-Nonce": self.nonce(), **(headers or {})}
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=all_headers)
        return httpx.Response(status, json=body, headers=all_headers)

    def problem(self, kind: str, detail: str, status: int = 400) -> httpx.Response:
        body = {"type": PROBLEM + kind, "detail": detail, "status": status}
        return self.reply(status, body, headers={"Content-Type": "application/problem+json"})

    # --- the transport --------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if request.method == "GET" and url == f"{BASE}/directory":
            return httpx.Response(
                200,
                json={
                    "newNonce": f"{BASE}/new-nonce",
                    "newAccount": f"{BASE}/new-account",
                    "newOrder": f"{BASE}/new-order",
                    "revokeCert": f"{BASE}/revoke-cert",
                    "meta": {"termsOfService": "https://acme.test/tos"},
                },
            )
        if request.method == "HEAD" and url == f"{BASE}/new-nonce":
            return self.reply(200, "")
        if request.method != "POST":
            body = {"status": 404, "error": "notFound", "message": f"no such resource: {url}"}
            return httpx.Response(404, json=body)
        assert request.headers["Content-Type"] == "application/jose+json"
        checked = self.check_jws(request)
        if isinstance(checked, httpx.Response):
            return checked
        protected, payload, account = checked
        self.log.append((url, protected, payload))
        return self.route(url, payload, account, request)

    def check_jws(self, request: httpx.Request) -> httpx.Response | tuple[dict[str, Any], Any, str]:
        body = json.loads(request.content)
        assert set(body) == {"protected", "payload", "signature"}, body
        protected = json.loads(b64url_decode(body["protected"]))
        assert protected["url"] == str(request.url)
        assert ("jwk" in protected) != ("kid" in protected), protected
        if protected["nonce"] not in self.nonces:
            return self.problem("badNonce", "unknown or reused nonce")
        self.nonces.discard(protected["nonce"])
        if self.reject_nonces:
            self.reject_nonces -= 1
            return self.problem("badNonce", "nonce refused for the test")
        if "jwk" in protected:
            key = public_key_from_jwk(protected["jwk"])
            account = self.by_thumbprint.get(jwk_thumbprint(protected["jwk"]), "")
        else:
            account = protected["kid"]
            if account not in self.accounts:
                return self.problem("accountDoesNotExist", "no such account")
            key = self.accounts[account]
        signing_input = f"{body['protected']}.{body['payload']}".encode()
        verify_signature(protected["alg"], key, signing_input, b64url_decode(body["signature"]))
        payload = json.loads(b64url_decode(body["payload"])) if body["payload"] else None
        if "jwk" in protected and not str(request.url).endswith(("/new-account", "/revoke-cert")):
            return self.problem("malformed", "jwk only for newAccount and revokeCert")
        return protected, payload, account or protected.get("jwk", {}).get("x", "")

    def route(self, url: str, payload: Any, account: str, request: httpx.Request) -> httpx.Response:
        if url.endswith("/new-account"):
            return self.new_account(
                payload, json.loads(b64url_decode(json.loads(request.content)["protected"]))
            )
        if url.endswith("/new-order"):
            return self.new_order(payload, account)
        if url in self.authzs:
            return self.authz(url, payload)
        if url in self.challenges:
            return self.challenge(url, payload)
        if url.endswith("/finalize"):
            return self.finalize(url.removesuffix("/finalize"), payload)
        if url in self.orders:
            return self.reply(200, self.orders[url])
        if url in self.certs:
            assert request.headers.get("Accept") == "application/pem-certificate-chain"
            return self.reply(
                200, self.certs[url], headers={"Content-Type": "application/pem-certificate-chain"}
            )
        if url.endswith("/revoke-cert"):
            return self.reply(200, "")
        return self.problem("malformed", f"no resource at {url}", 404)

    def new_account(self, payload: dict[str, Any], protected: dict[str, Any]) -> httpx.Response:
        thumbprint = jwk_thumbprint(protected["jwk"])
        existing = self.by_thumbprint.get(thumbprint)
        if existing:
            return self.reply(200, {"status": "valid"}, headers={"Location": existing})
        if payload.get("onlyReturnExisting"):
            return self.problem("accountDoesNotExist", "no account for this key")
        eab = payload.get("externalAccountBinding")
        if eab is not None:
            inner = json.loads(b64url_decode(eab["protected"]))
            assert inner == {"alg": "HS256", "kid": "eab-1", "url": f"{BASE}/new-account"}
            assert json.loads(b64url_decode(eab["payload"])) == protected["jwk"]
            mac = hmac.new(b"eab secret", f"{eab['protected']}.{eab['payload']}".encode(), "sha256")
            if b64url_decode(eab["signature"]) != mac.digest():
                return self.problem("unauthorized", "the external account binding does not verify")
            self.eab_bound.append(inner["kid"])
        if payload.get("termsOfServiceAgreed") is not True:
            return self.problem("userActionRequired", "agree to the terms of service", 403)
        url = self.url("account")
        self.accounts[url] = public_key_from_jwk(protected["jwk"])
        self.by_thumbprint[thumbprint] = url
        return self.reply(
            201,
            {"status": "valid", "contact": payload.get("contact", [])},
            headers={"Location": url},
        )

    def new_order(self, payload: dict[str, Any], account: str) -> httpx.Response:
        (identifier,) = payload["identifiers"]
        assert identifier["type"] == "permanent-identifier"
        order_url = self.url("order")
        authz_url = self.url("authz")
        challenge_url = self.url("challenge")
        challenge = {
            "type": "device-attest-01",
            "url": challenge_url,
            "token": f"token{self.counter}",
            "status": "pending",
        }
        authz = {
            "status": "pending",
            "identifier": identifier,
            "challenges": [challenge],
            "account": account,
        }
        if self.valid_authz_on_order:
            self.valid_authz_on_order = False
            authz["status"] = "valid"
            challenge["status"] = "valid"
        self.authzs[authz_url] = authz
        self.challenges[challenge_url] = (authz_url, challenge)
        self.orders[order_url] = {
            "status": "pending",
            "identifiers": [identifier],
            "authorizations": [authz_url],
            "finalize": f"{order_url}/finalize",
            "account": account,
        }
        return self.reply(201, self.orders[order_url], headers={"Location": order_url})

    def authz(self, url: str, payload: Any) -> httpx.Response:
        authz = self.authzs[url]
        if payload == {"status": "deactivated"}:
            authz["status"] = "deactivated"
            return self.reply(200, authz)
        assert payload is None
        if authz["status"] == "processing":
            if self.processing_polls:
                self.processing_polls -= 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return self.reply(200, authz, headers=headers)
            self.settle(url)
        return self.reply(200, authz)

    def settle(self, authz_url: str) -> None:
        authz = self.authzs[authz_url]
        challenge = authz["challenges"][0]
        error = self.verify(authz, challenge) if "payload" in challenge else None
        if error:
            challenge.update(
                status="invalid", error={"type": PROBLEM + error[0], "detail": error[1]}
            )
            authz["status"] = "invalid"
            for order in self.orders.values():
                if authz_url in order["authorizations"]:
                    order["status"] = "invalid"
        else:
            challenge["status"] = authz["status"] = "valid"
            for order in self.orders.values():
                if authz_url in order["authorizations"]:
                    order["status"] = "ready"

    def challenge(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        authz_url, challenge = self.challenges[url]
        challenge["payload"] = payload
        challenge["status"] = "processing"
        self.authzs[authz_url]["status"] = "processing"
        if not self.processing_polls:
            self.settle(authz_url)
        return self.reply(200, {k: v for k, v in challenge.items() if k != "payload"})

    def verify(self, authz: dict[str, Any], challenge: dict[str, Any]) -> tuple[str, str] | None:
        att_obj = cbor2.loads(b64url_decode(challenge["payload"]["attObj"]))
        self.evidence.append(att_obj)
        statement = att_obj["attStmt"]
        ak_cert = x509.load_der_x509_certificate(statement["x5c"][0])
        ak_cert.verify_directly_issued_by(self.ca.cert)
        attest = verify_attestation(ak_cert.public_key(), statement["certInfo"], statement["sig"])  # type: ignore[arg-type]
        thumbprint = jwk_thumbprint(jwk_from_public_key(self.accounts[authz["account"]]))
        key_authorization = f"{challenge['token']}.{thumbprint}"
        if attest.extra_data != hashlib.sha256(key_authorization.encode()).digest():
            return ("badAttestationStatement", "extraData is not SHA-256 of the key authorization")
        public = TPMTPublic.from_bytes(statement["pubArea"])
        assert isinstance(attest.attested, CertifyInfo)
        if attest.attested.name != public.name():
            return ("badAttestationStatement", "certInfo certifies another key")
        identities = identities_of_ak_certificate(ak_cert)
        if authz["identifier"]["value"] not in identities.permanent_identifiers:
            return ("rejectedIdentifier", "the identifier is not bound to the AK certificate")
        self.attested[id(authz)] = public_key_from_tpmt(public)
        return None

    def finalize(self, order_url: str, payload: dict[str, Any]) -> httpx.Response:
        order = self.orders[order_url]
        if order["status"] != "ready":
            return self.problem("orderNotReady", "the order is not ready", 403)
        csr = x509.load_der_x509_csr(b64url_decode(payload["csr"]))
        assert csr.is_signature_valid
        authz = self.authzs[order["authorizations"][0]]
        if csr.public_key() != self.attested.get(id(authz)):
            return self.problem("badCSR", "the CSR's key is not the attested key")
        value = order["identifiers"][0]["value"]
        if self.issue_for_other_identifier:
            value = "someone-else"
        leaf = self.ca.issue(csr.public_key(), [permanent_identifier_name(value)])
        cert_url = self.url("cert")
        self.certs[cert_url] = leaf.public_bytes(serialization.Encoding.PEM).decode()
        order.update(status="valid", certificate=cert_url)
        return self.reply(200, order)


@pytest.fixture
def fake(tmp_path: Path) -> FakeACME:
    return FakeACME(FakeCA(tmp_path))


def client_for(
    fake: FakeACME, key: ec.EllipticCurvePrivateKey | None = None, **kwargs: Any
) -> ACMEClient:
    return ACMEClient(
        f"{BASE}/directory",
        None,
        key or ec.generate_private_key(ec.SECP256R1()),
        transport=httpx.MockTransport(fake),
        **kwargs,
    )


# --- the protocol ---------------------------------------------------------------------


def test_new_account_signs_with_jwk_then_everything_else_with_kid(fake: FakeACME) -> None:
    with client_for(fake) as acme:
        account = acme.new_account(contact=["mailto:ops@example.com"])
        assert account.url == acme.account_url and account.url in fake.accounts
        acme.new_order([{"type": "permanent-identifier", "value": "x"}])
    (new_account_url, header, payload), (_, order_header, _) = fake.log
    assert new_account_url.endswith("/new-account") and "jwk" in header and header["alg"] == "ES256"
    assert payload == {"termsOfServiceAgreed": True, "contact": ["mailto:ops@example.com"]}
    assert order_header["kid"] == account.url and "jwk" not in order_header


def test_an_existing_account_is_found_again_and_only_return_existing_creates_none(
    fake: FakeACME,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with client_for(fake, key) as acme:
        with pytest.raises(ACMEError) as refused:
            acme.new_account(only_return_existing=True)
        assert refused.value.problem == "accountDoesNotExist" and refused.value.status == 400
        first = acme.new_account()
    with client_for(fake, key) as acme:
        assert acme.new_account(only_return_existing=True).url == first.url
    assert fake.log[-1][2] == {"onlyReturnExisting": True}


def test_external_account_binding_is_an_hs256_jws_over_the_account_key(fake: FakeACME) -> None:
    with client_for(fake) as acme:
        acme.new_account(external_account_binding=("eab-1", b"eab secret"))
    assert fake.eab_bound == ["eab-1"]
    with client_for(fake) as acme, pytest.raises(ACMEError, match="does not verify"):
        acme.new_account(external_account_binding=("eab-1", b"wrong"))


def test_revocation_by_the_account_or_by_the_certificates_own_key(fake: FakeACME) -> None:
    cert_key = ec.generate_private_key(ec.SECP256R1())
    certificate = fake.ca.issue(cert_key.public_key(), [x509.DNSName("device.test")])
    with client_for(fake) as acme:
        account = acme.new_account()
        acme.revoke(certificate, reason=4)
        acme.revoke(certificate, key=cert_key)
    (_, by_account, payload), (_, by_key, _) = fake.log[-2:]
    assert by_account["kid"] == account.url and "jwk" not in by_account
    assert payload == {
        "certificate": b64url_encode(certificate.public_bytes(serialization.Encoding.DER)),
        "reason": 4,
    }
    assert public_key_from_jwk(by_key["jwk"]) == cert_key.public_key() and "kid" not in by_key


def test_a_bad_nonce_is_retried_once_with_the_fresh_nonce(fake: FakeACME) -> None:
    with client_for(fake) as acme:
        fake.reject_nonces = 1
        acme.new_account()
        fake.reject_nonces = 2
        with pytest.raises(ACMEError, match=r"refused the new order \(400 badNonce\)") as refused:
            acme.new_order([{"type": "permanent-identifier", "value": "x"}])
    assert refused.value.type == PROBLEM + "badNonce"
    assert refused.value.detail == "nonce refused for the test"


def test_problem_documents_become_one_line_agent_errors(fake: FakeACME) -> None:
    with client_for(fake) as acme:
        acme.account_url = f"{BASE}/account/404"
        with pytest.raises(AgentError) as refused:
            acme.new_order([{"type": "permanent-identifier", "value": "x"}])
    error = refused.value
    assert isinstance(error, ACMEError)
    assert (error.problem, error.detail, error.status) == (
        "accountDoesNotExist",
        "no such account",
        400,
    )
    assert (
        str(error)
        == "the ACME server refused the new order (400 accountDoesNotExist): no such account"
    )


def test_a_directory_that_is_not_there_is_reported_with_the_servers_message(
    fake: FakeACME,
) -> None:
    acme = ACMEClient(
        f"{BASE}/nowhere",
        None,
        ec.generate_private_key(ec.SECP256R1()),
        transport=httpx.MockTransport(fake),
    )
    with acme, pytest.raises(ACMEError) as refused:
        acme.new_account()
    assert str(refused.value) == (
        f"the ACME server refused the directory request (404): no such resource: {BASE}/nowhere"
    )
    assert refused.value.status == 404 and refused.value.type is None


def test_polling_honours_retry_after_within_bounds(fake: FakeACME) -> None:
    waits: list[float] = []
    with client_for(fake, sleep=waits.append, max_poll_interval=5.0) as acme:
        acme.new_account()
        order = acme.new_order([{"type": "permanent-identifier", "value": "x"}])
        (authz_url,) = order.urls("authorizations")
        fake.authzs[authz_url]["status"] = "processing"
        fake.processing_polls, fake.retry_after = 2, "3600"
        assert acme.wait_for_authorization(authz_url).status == "valid"
    assert waits == [5.0, 5.0]  # an hour asked for, the bound given


def test_polling_gives_up_after_the_poll_timeout(fake: FakeACME) -> None:
    with client_for(fake, sleep=lambda _s: None, poll_timeout=0.0) as acme:
        acme.new_account()
        order = acme.new_order([{"type": "permanent-identifier", "value": "x"}])
        (authz_url,) = order.urls("authorizations")
        fake.authzs[authz_url]["status"] = "processing"
        fake.processing_polls = 100
        with pytest.raises(AgentError, match=r"still 'processing' after 0 s"):
            acme.wait_for_authorization(authz_url)


def test_account_key_is_a_private_p256_file_reused_across_runs(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "agent")
    key = load_or_create_account_key(state)
    path = state.path(ACCOUNT_KEY_FILE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.directory.stat().st_mode) == 0o700
    assert key.curve.name == "secp256r1"
    assert load_or_create_account_key(state).private_numbers() == key.private_numbers()
    path.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(AgentError, match="not an ECC P-256 key"):
        load_or_create_account_key(state)


# --- enrolment with a real TPM against the fake server ------------------------------------


def install_ak(
    tpm: TPM, state: AgentState, ca: FakeCA, algorithm: KeyAlgorithm, value: str
) -> None:
    """What `devid agent attest` leaves behind, with an AK certificate from the fake CA."""
    ak = tpm.create_ak(algorithm)
    cert = ca.issue(public_key_from_tpmt(ak.public), [permanent_identifier_name(value)])
    state.save_ak(ak.key)
    state.save_chain([cert, ca.cert])


@pytest.fixture
def fake_enroll(fake: FakeACME, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """enroll() with its ACME client talking to the fake server."""

    def client(directory_url: str, root: Any, key: Any, **kwargs: Any) -> ACMEClient:
        return ACMEClient(
            directory_url,
            root,
            key,
            transport=httpx.MockTransport(fake),
            sleep=lambda _s: None,
            **kwargs,
        )

    monkeypatch.setattr(enroll_module, "ACMEClient", client)

    def run(tpm: TPM, state: AgentState, **kwargs: Any) -> Any:
        return enroll(f"{BASE}/directory", fake.ca.root_path, tpm, state, **kwargs)

    return run


@pytest.mark.parametrize("ak_algorithm", list(KeyAlgorithm), ids=lambda a: f"ak-{a.value}")
def test_enroll_answers_device_attest_01_with_a_certified_tpm_key(
    swtpm_rsa: Swtpm,
    fake: FakeACME,
    fake_enroll: Callable[..., Any],
    tmp_path: Path,
    ak_algorithm: KeyAlgorithm,
) -> None:
    state = AgentState(tmp_path / "agent")
    with TPM(swtpm_rsa.tcti) as tpm:
        install_ak(tpm, state, fake.ca, ak_algorithm, "device-1")
        chain, key = fake_enroll(tpm, state)
        signature = key.sign(b"hello", ec.ECDSA(hashes.SHA256()))
        assert tpm.loaded_objects() == 0
    assert isinstance(key, TPMSigningKey)
    chain[0].public_key().verify(signature, b"hello", ec.ECDSA(hashes.SHA256()))
    assert identities_of_ak_certificate(chain[0]).permanent_identifiers == ("device-1",)
    (att_obj,) = fake.evidence
    statement = att_obj["attStmt"]
    assert att_obj["fmt"] == "tpm" and statement["ver"] == "2.0"
    assert statement["alg"] == (-7 if ak_algorithm is KeyAlgorithm.ECC_P256 else -257)
    assert [x509.load_der_x509_certificate(d) for d in statement["x5c"]] == state.load_chain()
    assert statement["pubArea"] == public_of(key.wrapped).to_bytes()
    order_payloads = [p for url, _, p in fake.log if url.endswith("/new-order")]
    assert order_payloads == [
        {"identifiers": [{"type": "permanent-identifier", "value": "device-1"}]}
    ]
    # The state directory gained the account key, nothing else.
    assert sorted(p.name for p in state.directory.iterdir()) == [
        "acme-account.key",
        "ak-chain.pem",
        "ak.crt",
        "ak.priv",
        "ak.pub",
    ]


def test_enroll_waits_for_processing_and_reorders_after_a_reused_authorization(
    swtpm_ecc: Swtpm, fake: FakeACME, fake_enroll: Callable[..., Any], tmp_path: Path
) -> None:
    state = AgentState(tmp_path / "agent")
    fake.valid_authz_on_order = True
    fake.processing_polls = 2
    with TPM(swtpm_ecc.tcti) as tpm:
        install_ak(tpm, state, fake.ca, KeyAlgorithm.ECC_P256, "device-2")
        chain, _ = fake_enroll(tpm, state)
    assert [a["status"] for a in fake.authzs.values()] == ["deactivated", "valid"]
    assert identities_of_ak_certificate(chain[0]).permanent_identifiers == ("device-2",)


def test_an_identifier_the_ak_certificate_does_not_bind_fails_with_the_servers_reason(
    swtpm_rsa: Swtpm, fake: FakeACME, fake_enroll: Callable[..., Any], tmp_path: Path
) -> None:
    state = AgentState(tmp_path / "agent")
    with TPM(swtpm_rsa.tcti) as tpm:
        install_ak(tpm, state, fake.ca, KeyAlgorithm.ECC_P256, "device-3")
        with pytest.raises(ACMEError, match="not bound to the AK certificate") as refused:
            fake_enroll(tpm, state, identifier="device-4")
    assert refused.value.problem == "rejectedIdentifier" and refused.value.status is None
    assert str(refused.value).startswith(
        "the ACME server refused the authorization (rejectedIdentifier)"
    )


def test_a_certificate_without_the_identifier_is_not_accepted(
    swtpm_rsa: Swtpm, fake: FakeACME, fake_enroll: Callable[..., Any], tmp_path: Path
) -> None:
    state = AgentState(tmp_path / "agent")
    fake.issue_for_other_identifier = True
    with TPM(swtpm_rsa.tcti) as tpm:
        install_ak(tpm, state, fake.ca, KeyAlgorithm.ECC_P256, "device-5")
        with pytest.raises(AgentError, match="does not carry the PermanentIdentifier 'device-5'"):
            fake_enroll(tpm, state)


def test_without_an_ak_certificate_or_a_ca_url_enroll_says_what_to_do(
    swtpm_rsa: Swtpm, fake_enroll: Callable[..., Any], tmp_path: Path
) -> None:
    with TPM(swtpm_rsa.tcti) as tpm, pytest.raises(AgentError, match="run `devid agent attest`"):
        fake_enroll(tpm, AgentState(tmp_path / "agent"))


def test_the_tpm_key_signs_csrs_and_never_exports_itself(swtpm_rsa: Swtpm) -> None:
    with TPM(swtpm_rsa.tcti) as tpm:
        key = TPMSigningKey(tpm, tpm.create_key())
        csr = device_csr(key, "device-6")
    assert csr.is_signature_valid and csr.public_key() == key.public_key()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "device-6"
    with pytest.raises(TypeError):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(TypeError):
        key.private_numbers()
    with pytest.raises(TypeError):
        key.sign(b"data", ec.ECDSA(hashes.SHA384()))
