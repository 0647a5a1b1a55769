"""The CA's side of SCEP, in process: every operation, every refusal, and what is stored.

Each refusal must be a CertRep FAILURE with RFC 8894's failInfo and change nothing
stored; the challenge is never skipped except for a renewal signed by an active
certificate of the same provisioner.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.assurance import Assurance
from engine.errors import ConfigurationError, Conflict, NotFound
from engine.ports import FrozenClock
from engine.scep import (
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIStatus,
    issuer_and_serial,
    issuer_and_subject,
    read_cert_rep,
    read_certs_only,
)
from hosts.core.authority import Authority
from hosts.core.scep_ra import ra_files
from hosts.store import AuditQuery
from plugins.api import hookimpl
from plugins.enrolment import ChallengeQuery
from plugins.manager import PluginManager
from tests.conftest import CA
from tests.hosts.scep_support import (
    CHALLENGE,
    PROVISIONER,
    SCEPClient,
    add_scep_provisioner,
    client_key,
    counts,
    in_process_client,
    scep_csr,
    self_signed,
)


def load(
    ca: CA, clock: FrozenClock | None = None, plugins: PluginManager | None = None
) -> Authority:
    authority = Authority.load(ca.data_dir, ca.password, clock=clock, plugins=plugins)
    authority.set_base_urls(["https://ca.test"])
    return authority


@pytest.fixture
def scep_ca(ca: CA) -> CA:
    add_scep_provisioner(ca.data_dir, one_time_challenges=True)
    return ca


@pytest.fixture
def authority(scep_ca: CA) -> Iterator[Authority]:
    authority = load(scep_ca)
    yield authority
    authority.close()


@pytest.fixture
def client(authority: Authority) -> SCEPClient:
    return in_process_client(authority)


def refused(rep: Any, fail_info: FailInfo, words: str) -> None:
    assert rep.status is PKIStatus.FAILURE, rep
    assert rep.fail_info is fail_info, rep
    assert words in (rep.fail_text or ""), rep


# --- GetCACaps, GetCACert, GetNextCACert ---------------------------------------------------


def test_capabilities_say_what_the_provisioner_does(authority: Authority) -> None:
    caps = authority.scep.ca_caps(PROVISIONER).split()
    assert {"POSTPKIOperation", "SCEPStandard", "Renewal", "AES", "SHA-256"} <= set(caps)
    # DES3 only when enabled; GetNextCACert only with a next CA certificate staged.
    assert "DES3" not in caps
    assert "GetNextCACert" not in caps
    with pytest.raises(NotFound):
        authority.scep.next_ca_cert(PROVISIONER)
    with pytest.raises(NotFound):
        authority.scep.ca_caps("no-such")
    with pytest.raises(NotFound):  # a provisioner that exists but is not SCEP
        authority.scep.ca_caps("admin")


def test_ca_cert_is_the_ra_then_the_chain_and_the_ra_key_is_not_the_issuing_key(
    authority: Authority, scep_ca: CA
) -> None:
    certificates, _ = read_certs_only(authority.scep.ca_cert(PROVISIONER))
    # A SET OF in the PKCS#7: clients find the RA by its key usage, not its place.
    ra = authority.scep.ca_certificates(PROVISIONER)[0]
    tls = authority.issuers["tls"]
    assert set(certificates) == {ra, tls.certificate, authority.root}
    ra.verify_directly_issued_by(tls.certificate)
    assert ra.public_key() != tls.certificate.public_key()
    usage = ra.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and usage.digital_signature and not usage.key_cert_sign
    assert not ra.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Kept encrypted on disk and the same after a restart.
    cert_path, key_path = ra_files(scep_ca.data_dir, PROVISIONER)
    assert b"ENCRYPTED" in key_path.read_bytes()
    assert (key_path.stat().st_mode & 0o077) == 0
    again = load(scep_ca)
    try:
        assert again.scep.ca_certificates(PROVISIONER)[0] == ra
    finally:
        again.close()
    assert cert_path.exists()


def test_an_ra_certificate_near_its_end_is_made_again(scep_ca: CA) -> None:
    clock = FrozenClock(datetime.now(UTC))
    authority = load(scep_ca, clock)
    try:
        first = authority.scep.ca_certificates(PROVISIONER)[0]
        clock.advance(timedelta(days=340))
        second = authority.scep.ca_certificates(PROVISIONER)[0]
    finally:
        authority.close()
    assert second != first
    assert second.not_valid_after_utc > first.not_valid_after_utc


def test_next_ca_cert_is_served_when_staged(ca: CA) -> None:
    staged = ca.data_dir / "certs" / "tls_ca.crt"  # any PEM certificate will do here
    add_scep_provisioner(ca.data_dir, next_ca_certificate=str(staged))
    authority = load(ca)
    try:
        assert "GetNextCACert" in authority.scep.ca_caps(PROVISIONER).split()
        signed = authority.scep.next_ca_cert(PROVISIONER)
        ra = authority.scep.ca_certificates(PROVISIONER)[0]
    finally:
        authority.close()
    # SignedData from the RA whose content is the certs-only PKCS#7 of the staged CA.
    from asn1crypto import cms

    info = cms.ContentInfo.load(signed)
    content = info["content"]["encap_content_info"]["content"].native
    certificates, _ = read_certs_only(content)
    # (A SET OF: in DER order, not the order given.)
    assert x509.load_pem_x509_certificate(staged.read_bytes()) in certificates
    assert len(certificates) == 2
    signer = info["content"]["signer_infos"][0]["sid"].chosen
    assert signer["serial_number"].native == ra.serial_number


# --- PKCSReq -------------------------------------------------------------------------------


def test_pkcsreq_with_the_static_challenge_issues_what_the_policy_says(
    authority: Authority, client: SCEPClient
) -> None:
    rep = client.call("tx-1", scep_csr(client.key, "dev1", CHALLENGE))
    assert rep.status is PKIStatus.SUCCESS, rep
    assert rep.transaction_id == "tx-1"
    (cert,) = rep.certificates
    cert.verify_directly_issued_by(authority.issuers["tls"].certificate)
    assert cert.subject.rfc4514_string() == "CN=dev1"
    assert cert.public_key() == client.key.public_key()
    assert Assurance.of(cert) is Assurance.MDM_CHALLENGE
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=89) < lifetime < timedelta(days=91)
    record = authority.ca.stores.certificates.get_certificate(format(cert.serial_number, "x"))
    assert record is not None and record.provisioner_name == PROVISIONER
    assert record.evidence["method"] == "scep"
    assert record.evidence["challenge"] == "static"
    transaction = authority.ca.stores.scep.get_transaction(PROVISIONER, "tx-1")
    assert transaction is not None and transaction.status == "issued"
    assert transaction.serial == record.serial
    events, _ = authority.auditor.find(AuditQuery())
    issued = [e for e in events if e.target == record.serial]
    assert issued and issued[0].details.get("challenge") == "static"


@pytest.mark.parametrize(
    ("challenge", "words"),
    [
        (None, "no challenge password"),
        ("", "no challenge password"),
        ("wrong-challenge-wrong-challenge", "not valid"),
        (CHALLENGE + "x", "not valid"),
    ],
)
def test_a_missing_empty_or_wrong_challenge_is_refused_and_nothing_stored(
    authority: Authority, client: SCEPClient, challenge: str | None, words: str
) -> None:
    before = counts(authority)
    rep = client.call("tx-bad", scep_csr(client.key, "dev1", challenge))
    refused(rep, FailInfo.BAD_REQUEST, words)
    assert rep.transaction_id == "tx-bad"
    assert counts(authority) == before


def test_a_resend_gets_the_same_certificate_and_a_reused_transaction_id_is_refused(
    authority: Authority, client: SCEPClient
) -> None:
    csr = scep_csr(client.key, "dev1", CHALLENGE)
    first = client.call("tx-same", csr)
    again = client.call("tx-same", csr)
    assert first.status is again.status is PKIStatus.SUCCESS
    assert first.certificates == again.certificates
    before = counts(authority)
    other = client.call("tx-same", scep_csr(client.key, "dev-other", CHALLENGE))
    refused(other, FailInfo.BAD_REQUEST, "was used for another request")
    assert counts(authority) == before


def test_names_outside_the_policy_are_refused(scep_ca: CA) -> None:
    authority = load(scep_ca)
    try:
        client = in_process_client(authority)
        before = counts(authority)
        rep = client.call("tx-san", scep_csr(client.key, "dev1", CHALLENGE, sans=("a.example",)))
        refused(rep, FailInfo.BAD_REQUEST, "certifies no subject alternative names")
        assert counts(authority) == before
    finally:
        authority.close()


def test_allowed_subjects_and_sans_are_enforced(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir, allowed_subjects=["dev-*"], allowed_sans=["*.corp.example"])
    authority = load(ca)
    try:
        client = in_process_client(authority)
        ok = client.call(
            "tx-ok", scep_csr(client.key, "dev-7", CHALLENGE, sans=("pc7.corp.example",))
        )
        assert ok.status is PKIStatus.SUCCESS, ok
        san = ok.certificates[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == ["pc7.corp.example"]
        refused(
            client.call("tx-cn", scep_csr(client.key, "printer", CHALLENGE)),
            FailInfo.BAD_REQUEST,
            "not allowed",
        )
        refused(
            client.call("tx-dns", scep_csr(client.key, "dev-8", CHALLENGE, sans=("evil.example",))),
            FailInfo.BAD_REQUEST,
            "evil.example",
        )
    finally:
        authority.close()


# --- one-time challenges --------------------------------------------------------------------


def test_a_one_time_challenge_enrols_once_for_its_subject(
    authority: Authority, client: SCEPClient
) -> None:
    made = authority.scep.create_challenge(PROVISIONER, "admin:test", subject="dev1")
    assert made.challenge not in json.dumps(
        [c.challenge_sha256 for c in authority.ca.stores.scep.challenges(provisioner=PROVISIONER)]
    )
    wrong_subject = client.call("tx-a", scep_csr(client.key, "dev2", made.challenge))
    refused(wrong_subject, FailInfo.BAD_REQUEST, "is for the subject 'dev1'")
    ok = client.call("tx-b", scep_csr(client.key, "dev1", made.challenge))
    assert ok.status is PKIStatus.SUCCESS, ok
    record = authority.ca.stores.scep.get_transaction(PROVISIONER, "tx-b")
    assert record is not None and record.method == "one-time"
    before = counts(authority)
    again = client.call("tx-c", scep_csr(client.key, "dev1", made.challenge))
    refused(again, FailInfo.BAD_REQUEST, "used already")
    assert counts(authority) == before


def test_an_expired_one_time_challenge_is_refused(scep_ca: CA) -> None:
    clock = FrozenClock(datetime.now(UTC))
    authority = load(scep_ca, clock)
    try:
        made = authority.scep.create_challenge(
            PROVISIONER, "admin:test", lifetime=timedelta(minutes=5)
        )
        clock.advance(timedelta(minutes=6))
        client = in_process_client(authority)
        refused(
            client.call("tx-late", scep_csr(client.key, "dev1", made.challenge)),
            FailInfo.BAD_REQUEST,
            "expired",
        )
    finally:
        authority.close()


def test_one_time_challenges_need_the_option(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir)
    authority = load(ca)
    try:
        with pytest.raises(Conflict, match="one_time_challenges"):
            authority.scep.create_challenge(PROVISIONER, "admin:test")
    finally:
        authority.close()


# --- manual approval, CertPoll ----------------------------------------------------------------


def test_manual_approval_keeps_the_request_pending_until_an_operator_decides(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir, approval="manual")
    authority = load(ca)
    try:
        client = in_process_client(authority)
        # The challenge is still required: approval is in addition to it.
        refused(
            client.call("tx-none", scep_csr(client.key, "dev1")),
            FailInfo.BAD_REQUEST,
            "no challenge password",
        )
        rep = client.call("tx-wait", scep_csr(client.key, "dev1", CHALLENGE))
        assert rep.status is PKIStatus.PENDING
        assert counts(authority)["certificates"] == 0
        (pending,) = authority.scep.pending(PROVISIONER)
        assert pending.transaction_id == "tx-wait" and pending.subject == "CN=dev1"
        poll = issuer_and_subject(
            authority.issuers["tls"].certificate.subject, x509.Name.from_rfc4514_string("CN=dev1")
        )
        assert client.call("tx-wait", poll, MessageType.CERT_POLL).status is PKIStatus.PENDING
        refused(
            client.call("tx-unknown", poll, MessageType.CERT_POLL),
            FailInfo.BAD_CERT_ID,
            "no request",
        )
        done = authority.scep.approve(PROVISIONER, "tx-wait", "admin:alice")
        assert done.status == "issued" and done.decided_by == "admin:alice"
        got = client.call("tx-wait", poll, MessageType.CERT_POLL)
        assert got.status is PKIStatus.SUCCESS
        assert format(got.certificates[0].serial_number, "x") == done.serial
        with pytest.raises(Conflict):
            authority.scep.approve(PROVISIONER, "tx-wait", "admin:alice")
        # Another request, rejected.
        client2 = in_process_client(authority, 1, "dev2")
        assert (
            client2.call("tx-no", scep_csr(client2.key, "dev2", CHALLENGE)).status
            is PKIStatus.PENDING
        )
        authority.scep.reject(PROVISIONER, "tx-no", "admin:alice", "not one of ours")
        poll2 = issuer_and_subject(
            authority.issuers["tls"].certificate.subject, x509.Name.from_rfc4514_string("CN=dev2")
        )
        refused(
            client2.call("tx-no", poll2, MessageType.CERT_POLL),
            FailInfo.BAD_REQUEST,
            "not one of ours",
        )
        assert authority.scep.pending(PROVISIONER) == []
    finally:
        authority.close()


# --- renewal -------------------------------------------------------------------------------------


def _enrolled(authority: Authority, client: SCEPClient) -> x509.Certificate:
    rep = client.call("tx-first", scep_csr(client.key, "dev1", CHALLENGE))
    assert rep.status is PKIStatus.SUCCESS, rep
    return rep.certificates[0]


def test_renewal_signed_by_an_active_certificate_needs_no_challenge(
    authority: Authority, client: SCEPClient
) -> None:
    cert = _enrolled(authority, client)
    new_key = client_key(2)
    signer = (cert, client.key)
    rep = client.call("tx-renew", scep_csr(new_key, "dev1"), MessageType.RENEWAL_REQ, signer=signer)
    assert rep.status is PKIStatus.SUCCESS, rep
    renewed = rep.certificates[0]
    assert renewed.public_key() == new_key.public_key()
    record = authority.ca.stores.certificates.get_certificate(format(renewed.serial_number, "x"))
    assert record is not None
    assert record.evidence["challenge"] == "renewal"
    assert record.evidence["renewed_serial"] == format(cert.serial_number, "x")
    # UpdateReq too.
    rep = client.call("tx-update", scep_csr(new_key, "dev1"), MessageType.UPDATE_REQ, signer=signer)
    assert rep.status is PKIStatus.SUCCESS, rep
    # A renewal keeps the subject.
    refused(
        client.call("tx-rename", scep_csr(new_key, "dev9"), MessageType.RENEWAL_REQ, signer=signer),
        FailInfo.BAD_REQUEST,
        "keeps the subject",
    )


def test_renewal_by_a_revoked_certificate_is_refused(
    authority: Authority, client: SCEPClient
) -> None:
    cert = _enrolled(authority, client)
    authority.revocation.admin_revoke(cert.serial_number, 1, "lost", "admin:test")
    before = counts(authority)
    rep = client.call(
        "tx-renew", scep_csr(client.key, "dev1"), MessageType.RENEWAL_REQ, signer=(cert, client.key)
    )
    refused(rep, FailInfo.BAD_REQUEST, "revoked")
    assert counts(authority) == before


def test_renewal_by_a_certificate_of_another_provisioner_is_refused(
    authority: Authority, client: SCEPClient
) -> None:
    jwk_cert = _jwk_certificate(authority, client.key)
    rep = client.call(
        "tx-x", scep_csr(client.key, "dev1"), MessageType.RENEWAL_REQ, signer=(jwk_cert, client.key)
    )
    refused(rep, FailInfo.BAD_REQUEST, "not issued through provisioner 'mdm'")


def _jwk_certificate(authority: Authority, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A TLS CA certificate for *key* from the JWK provisioner ``admin``."""
    from engine.csr import parse_csr
    from engine.extensions import ProvisionerRef
    from engine.pipeline import SignRequest as PipelineRequest
    from engine.pipeline import prepare_certificate
    from engine.policy import DurationLimits, SignPolicy

    policy = SignPolicy(
        provisioner=ProvisionerRef("JWK", "admin"),
        issuer="tls",
        durations=DurationLimits(timedelta(minutes=5), timedelta(days=1), timedelta(hours=1)),
    )
    csr = parse_csr(scep_csr(key, "dev1"))
    issued = prepare_certificate(
        PipelineRequest(csr=csr), policy, authority.issuers["tls"], authority.ca.clock
    ).sign(authority.ca.random)
    authority.ca.record_issued(issued)
    return issued.certificate


def test_renewal_can_be_turned_off(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir, allow_renewal=False)
    authority = load(ca)
    try:
        client = in_process_client(authority)
        assert "Renewal" not in authority.scep.ca_caps(PROVISIONER)
        cert = _enrolled(authority, client)
        refused(
            client.call(
                "tx-r",
                scep_csr(client.key, "dev1", CHALLENGE),
                MessageType.RENEWAL_REQ,
                signer=(cert, client.key),
            ),
            FailInfo.BAD_REQUEST,
            "does not renew",
        )
    finally:
        authority.close()


def test_a_renewal_request_not_signed_by_our_certificate_still_needs_the_challenge(
    authority: Authority, client: SCEPClient
) -> None:
    refused(
        client.call("tx-r", scep_csr(client.key, "dev1"), MessageType.RENEWAL_REQ),
        FailInfo.BAD_REQUEST,
        "no challenge password",
    )
    ok = client.call("tx-r2", scep_csr(client.key, "dev1", CHALLENGE), MessageType.RENEWAL_REQ)
    assert ok.status is PKIStatus.SUCCESS


# --- GetCert, GetCRL, unknown types -----------------------------------------------------


def test_get_cert_and_get_crl(authority: Authority, client: SCEPClient) -> None:
    cert = _enrolled(authority, client)
    tls = authority.issuers["tls"].certificate
    got = client.call(
        "tx-g", issuer_and_serial(tls.subject, cert.serial_number), MessageType.GET_CERT
    )
    assert got.status is PKIStatus.SUCCESS and got.certificates == (cert,)
    refused(
        client.call("tx-g2", issuer_and_serial(tls.subject, 12345), MessageType.GET_CERT),
        FailInfo.BAD_CERT_ID,
        "no certificate",
    )
    other = _jwk_certificate(authority, client_key(3))
    refused(
        client.call(
            "tx-g3", issuer_and_serial(tls.subject, other.serial_number), MessageType.GET_CERT
        ),
        FailInfo.BAD_CERT_ID,
        "was issued through",
    )
    authority.revocation.admin_revoke(cert.serial_number, 1, "lost", "admin:test")
    crl_rep = client.call(
        "tx-c", issuer_and_serial(tls.subject, cert.serial_number), MessageType.GET_CRL
    )
    assert crl_rep.status is PKIStatus.SUCCESS
    crl = x509.load_der_x509_crl(crl_rep.crls[0])
    assert crl.issuer == tls.subject
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    refused(
        client.call(
            "tx-c2",
            issuer_and_serial(x509.Name.from_rfc4514_string("CN=Elsewhere"), 1),
            MessageType.GET_CRL,
        ),
        FailInfo.BAD_CERT_ID,
        "not a CA of this server",
    )


@pytest.mark.parametrize("message_type", [0, 3, 16, 23, 99])
def test_unknown_message_types_are_refused(
    authority: Authority, client: SCEPClient, message_type: int
) -> None:
    refused(
        client.call("tx-u", scep_csr(client.key, "dev1", CHALLENGE), message_type),
        FailInfo.BAD_REQUEST,
        f"unknown message type {message_type}",
    )
    assert counts(authority)["certificates"] == 0


# --- messages that do not verify ---------------------------------------------------------------


def test_hostile_messages_get_failure_and_change_nothing(
    authority: Authority, client: SCEPClient
) -> None:
    before = counts(authority)
    good = client.request("tx-h", scep_csr(client.key, "dev1", CHALLENGE))
    ra = client.ra
    # Not DER at all, truncated, empty: FAILURE badRequest, with what could be read.
    for body in (b"", b"garbage", good[: len(good) // 2]):
        rep = read_cert_rep(authority.scep.pki_operation(PROVISIONER, body), trusted=[ra])
        assert rep.status is PKIStatus.FAILURE
        assert rep.fail_info is FailInfo.BAD_REQUEST, rep
    # The signature broken (a byte of it flipped): badMessageCheck.
    flipped = bytearray(good)
    flipped[-5] ^= 0x01
    rep = read_cert_rep(authority.scep.pki_operation(PROVISIONER, bytes(flipped)), trusted=[ra])
    refused(rep, FailInfo.BAD_MESSAGE_CHECK, "")
    assert rep.transaction_id == "tx-h"
    # Encrypted to another certificate than our RA: badMessageCheck.
    stranger = self_signed(client_key(4), "not the RA")
    rep = client.call("tx-e", scep_csr(client.key, "dev1", CHALLENGE), recipient=stranger)
    refused(rep, FailInfo.BAD_MESSAGE_CHECK, "recipient")
    # DES3 while the provisioner does not allow it: badAlg.
    rep = client.call(
        "tx-d", scep_csr(client.key, "dev1", CHALLENGE), encryption=ContentEncryption.DES3_CBC
    )
    refused(rep, FailInfo.BAD_ALG, "des-ede3-cbc")
    # Content that is no CSR.
    refused(client.call("tx-n", b"\x30\x03\x02\x01\x00"), FailInfo.BAD_REQUEST, "")
    assert counts(authority) == before


def test_des3_works_when_enabled_and_the_reply_uses_it(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir, allow_des3=True)
    authority = load(ca)
    try:
        assert "DES3" in authority.scep.ca_caps(PROVISIONER).split()
        client = in_process_client(authority)
        message = client.request(
            "tx-3", scep_csr(client.key, "dev1", CHALLENGE), encryption=ContentEncryption.DES3_CBC
        )
        reply = authority.scep.pki_operation(PROVISIONER, message)
        # A reader that accepts only DES3 can open it: the reply is in the client's cipher.
        rep = read_cert_rep(
            reply,
            trusted=[client.ra],
            recipient=client.signer,
            key=client.key,
            allowed=frozenset({ContentEncryption.DES3_CBC}),
        )
        assert rep.status is PKIStatus.SUCCESS
    finally:
        authority.close()


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"challenge_file": None}, "no challenge is enabled"),
        ({"challenge": "inline-secret-inline-secret"}, "is a secret"),
        ({"issuer": "agent"}, "Agent CA"),
        ({"issuer": "account"}, "Account CA"),
        ({"encryption": "des3"}, "allow_des3"),
        ({"encryption": "rc2"}, "encryption must be one of"),
        ({"capabilities": ["DES3"]}, "allow_des3"),
        ({"capabilities": ["Teleport"]}, "unknown capability"),
        ({"approval": "sometimes"}, "approval"),
        ({"webhook": {"url": "ftp://x", "secret_file": "x"}}, "http"),
        ({"surprise": 1}, "unknown option"),
    ],
)
def test_bad_configuration_is_refused_at_load(ca: CA, options: dict[str, Any], words: str) -> None:
    add_scep_provisioner(ca.data_dir, **options)
    with pytest.raises(ConfigurationError, match=words):
        load(ca).close()


def test_a_short_static_challenge_is_refused(ca: CA, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    add_scep_provisioner(ca.data_dir, challenge_file=str(short))
    with pytest.raises(ConfigurationError, match="at least 16"):
        load(ca).close()


# --- the hook and the webhook ----------------------------------------------------------------


class _Judge:
    def __init__(self, verdict: bool | Exception | None) -> None:
        self.verdict = verdict
        self.seen: list[ChallengeQuery] = []

    @hookimpl
    def devid_scep_challenge(self, query: ChallengeQuery) -> bool | None:
        self.seen.append(query)
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (True, PKIStatus.SUCCESS),
        (False, PKIStatus.FAILURE),
        (None, PKIStatus.FAILURE),
        (RuntimeError("down"), PKIStatus.FAILURE),
    ],
)
def test_the_challenge_hook_decides(ca: CA, verdict: Any, status: PKIStatus) -> None:
    (ca.data_dir / "secrets").mkdir(exist_ok=True)
    add_scep_provisioner(ca.data_dir, challenge_file=None, challenge_hook=True)
    judge = _Judge(verdict)
    plugins = PluginManager()
    plugins.register(judge, "judge")
    authority = load(ca, plugins=plugins)
    try:
        client = in_process_client(authority)
        rep = client.call("tx-hook", scep_csr(client.key, "dev1", "mdm-issued-123"))
        assert rep.status is status, rep
        assert judge.seen[0].challenge == "mdm-issued-123"
        assert judge.seen[0].transaction_id == "tx-hook"
        assert judge.seen[0].csr.common_name == "dev1"
    finally:
        authority.close()


class _Webhook(BaseHTTPRequestHandler):
    secret = b"webhook-secret-webhook-secret"
    answer: tuple[int, bytes] = (200, b'{"allow": true}')
    seen: list[dict[str, Any]] = []
    delay = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        good = hmac.compare_digest(self.headers.get("x-devid-signature", ""), expected)
        type(self).seen.append({"body": json.loads(body), "signed": good})
        if self.delay:
            import time

            time.sleep(self.delay)
        status, payload = self.answer if good else (401, b"{}")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Webhook]]]:
    handler = type(
        "Handler", (_Webhook,), {"seen": [], "answer": (200, b'{"allow": true}'), "delay": 0.0}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # The timeout case closes the connection before the answer: nothing to report.
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/check", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("answer", "delay", "status"),
    [
        ((200, b'{"allow": true}'), 0.0, PKIStatus.SUCCESS),
        ((200, b'{"allow": false}'), 0.0, PKIStatus.FAILURE),
        ((200, b'{"allow": "yes"}'), 0.0, PKIStatus.FAILURE),
        ((500, b'{"allow": true}'), 0.0, PKIStatus.FAILURE),
        ((200, b"not json"), 0.0, PKIStatus.FAILURE),
        ((200, b'{"allow": true}'), 2.5, PKIStatus.FAILURE),  # slower than the 1s timeout
    ],
)
def test_the_webhook_decides_on_signed_requests(
    ca: CA,
    webhook: tuple[str, type[_Webhook]],
    answer: tuple[int, bytes],
    delay: float,
    status: PKIStatus,
) -> None:
    url, handler = webhook
    handler.answer = answer
    handler.delay = delay
    secret = ca.data_dir / "secrets" / "webhook"
    secret.write_bytes(_Webhook.secret + b"\n")
    add_scep_provisioner(
        ca.data_dir,
        challenge_file=None,
        webhook={"url": url, "secret_file": "secrets/webhook", "timeout": "1s"},
    )
    authority = load(ca)
    try:
        client = in_process_client(authority)
        rep = client.call("tx-web", scep_csr(client.key, "dev1", "from-the-mdm"))
        assert rep.status is status, rep
    finally:
        authority.close()
    (call,) = handler.seen
    assert call["signed"]
    assert call["body"]["challenge"] == "from-the-mdm"
    assert call["body"]["transactionID"] == "tx-web"
    assert call["body"]["provisioner"] == PROVISIONER
    assert call["body"]["commonName"] == "dev1"


def test_the_public_view_shows_no_secret(ca: CA, webhook: tuple[str, type[_Webhook]]) -> None:
    url, _ = webhook
    (ca.data_dir / "secrets" / "webhook").write_bytes(_Webhook.secret)
    add_scep_provisioner(
        ca.data_dir,
        one_time_challenges=True,
        webhook={"url": url, "secret_file": "secrets/webhook"},
    )
    authority = load(ca)
    try:
        made = authority.scep.create_challenge(PROVISIONER, "admin:test")
        text = json.dumps(authority.ca.provisioners.view())
    finally:
        authority.close()
    (view,) = [v for v in json.loads(text) if v["name"] == PROVISIONER]
    assert view["challenges"] == ["static", "one-time", "webhook"]
    assert view["assurance"] == "mdm-challenge"
    for secret in (CHALLENGE, made.challenge, _Webhook.secret.decode(), url, "secrets/"):
        assert secret not in text


def _ra_files(ca: CA, *, is_ca: bool = False, usage: bool = True) -> tuple[Path, Path]:
    """An RA certificate from the TLS CA for a new RSA key, written beside the CA."""
    from cryptography.hazmat.primitives import serialization

    authority = load(ca)
    try:
        tls = authority.issuers["tls"]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name.from_rfc4514_string("CN=Operator RA"))
            .issuer_name(tls.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if usage:
            builder = builder.add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
        signer = tls.signer.private_key
        cert = builder.sign(signer, tls.signer.hash_algorithm)  # type: ignore[arg-type]
    finally:
        authority.close()
    cert_path = ca.data_dir / "certs" / "operator-ra.crt"
    key_path = ca.data_dir / "secrets" / "operator-ra.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(ca.password),
        )
    )
    return cert_path, key_path


def test_an_ra_the_operator_provides_is_used(ca: CA) -> None:
    cert_path, key_path = _ra_files(ca)
    add_scep_provisioner(ca.data_dir, ra_certificate=str(cert_path), ra_key=str(key_path))
    authority = load(ca)
    try:
        ra = authority.scep.ca_certificates(PROVISIONER)[0]
        assert ra == x509.load_pem_x509_certificate(cert_path.read_bytes())
        client = in_process_client(authority)
        rep = client.call("tx-ra", scep_csr(client.key, "dev1", CHALLENGE))
        assert rep.status is PKIStatus.SUCCESS, rep
        # devid made no RA of its own for this provisioner.
        assert not ra_files(ca.data_dir, PROVISIONER)[0].exists()
    finally:
        authority.close()


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("ca", "must not be a CA"),
        ("no-key", "both ra_certificate and ra_key"),
        ("mismatch", "is not the RA certificate's key"),
        ("no-encipherment", "keyEncipherment"),
    ],
)
def test_a_bad_operator_ra_is_refused_at_load(ca: CA, kind: str, words: str) -> None:
    cert_path, key_path = _ra_files(ca, is_ca=kind == "ca")
    options: dict[str, Any] = {"ra_certificate": str(cert_path), "ra_key": str(key_path)}
    if kind == "no-key":
        del options["ra_key"]
    elif kind == "mismatch":
        first_key = key_path.read_bytes()
        _ra_files(ca)  # a new key and certificate in the same files
        key_path.write_bytes(first_key)
    elif kind == "no-encipherment":
        from cryptography.hazmat.primitives import serialization

        # The same key, certified for signing only.
        authority = load(ca)
        try:
            tls = authority.issuers["tls"]
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            builder = (
                x509.CertificateBuilder()
                .subject_name(old.subject)
                .issuer_name(tls.certificate.subject)
                .public_key(old.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(old.not_valid_before_utc)
                .not_valid_after(old.not_valid_after_utc)
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                    critical=True,
                )
            )
            signed = builder.sign(tls.signer.private_key, tls.signer.hash_algorithm)  # type: ignore[arg-type]
        finally:
            authority.close()
        cert_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    add_scep_provisioner(ca.data_dir, **options)
    with pytest.raises(ConfigurationError, match=words):
        load(ca).close()


def test_a_request_signed_with_an_ec_key_is_refused_before_anything_is_issued(
    authority: Authority, client: SCEPClient
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name.from_rfc4514_string("CN=dev1")
    from cryptography.hazmat.primitives import hashes

    ec_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    before = counts(authority)
    message = client.request(
        "tx-ec", scep_csr(client.key, "dev1", CHALLENGE), signer=(ec_cert, ec_key)
    )
    rep = read_cert_rep(authority.scep.pki_operation(PROVISIONER, message), trusted=[client.ra])
    refused(rep, FailInfo.BAD_ALG, "must be RSA")
    assert counts(authority) == before


def test_a_renewal_under_the_enrolments_transaction_id_renews_and_its_resend_is_answered(
    authority: Authority, client: SCEPClient
) -> None:
    cert = _enrolled(authority, client)  # transaction "tx-first"
    new_key = client_key(5)
    renewal = client.request(
        "tx-first", scep_csr(new_key, "dev1"), MessageType.RENEWAL_REQ, signer=(cert, client.key)
    )
    first = client.reply(renewal, signer=(cert, client.key))
    assert first.status is PKIStatus.SUCCESS, first
    renewed = first.certificates[0]
    assert renewed.serial_number != cert.serial_number
    assert renewed.public_key() == new_key.public_key()
    # The same renewal again (its reply was lost): the same certificate, no other.
    before = counts(authority)
    again = client.reply(renewal, signer=(cert, client.key))
    assert again.status is PKIStatus.SUCCESS and again.certificates == (renewed,)
    assert counts(authority) == before
    stored = authority.ca.stores.scep.get_transaction(PROVISIONER, "tx-first")
    assert stored is not None and stored.serial == format(renewed.serial_number, "x")
    assert stored.method == "renewal" and stored.message_type == MessageType.RENEWAL_REQ


def test_server_processes_sharing_a_data_directory_share_one_ra(ca: CA) -> None:
    """Each --workers process has its own RAKeys: the first to need the RA makes it, the
    others load it (a request encrypted to one worker's RA is read by any other)."""
    from engine.ports import CountingRandom
    from hosts.core.scep_ra import RAKeys

    add_scep_provisioner(ca.data_dir)
    authority = load(ca)
    try:
        issuer = authority.issuers["tls"]
    finally:
        authority.close()
    workers = [
        RAKeys(ca.data_dir, lambda: ca.password, CountingRandom(bytes([i]))) for i in range(4)
    ]
    now = datetime.now(UTC)
    made: list[x509.Certificate] = []
    barrier = threading.Barrier(len(workers))

    def first_use(keys: RAKeys) -> None:
        barrier.wait()
        made.append(keys.signer(PROVISIONER, issuer, now).certificate)

    threads = [threading.Thread(target=first_use, args=(keys,)) for keys in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == len(workers)
    assert len(set(made)) == 1
