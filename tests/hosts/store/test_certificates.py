"""Certificates, the tokens that authorized them, and revocations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hosts.store import Revocation, Stores

from .records import NOW, record, token


def revocation(serial: str, issuer: str = "agent") -> Revocation:
    return Revocation(serial, issuer, NOW, 1, "key compromise", "admin")


def test_a_record_reads_back_as_written(stores: Stores) -> None:
    written = record(
        "a1", evidence={"device": "urn:ek:sha256:aa", "nested": {"n": 1}}, sans=("a", "b")
    )
    assert stores.certificates.record_certificate(written)
    read = stores.certificates.get_certificate("a1")
    assert read is not None and read.serial == "a1" and read.der == written.der
    assert (read.sans, read.evidence, read.device, read.not_after, read.status) == (
        ("a", "b"),
        {"device": "urn:ek:sha256:aa", "nested": {"n": 1}},
        "urn:ek:sha256:aa",  # found in the evidence
        NOW + timedelta(days=1),
        "active",
    )
    assert stores.certificates.get_certificate("b1") is None


def test_a_used_token_stores_nothing(stores: Stores) -> None:
    assert stores.certificates.record_certificate(record("a1"), token("t1"))
    assert not stores.certificates.record_certificate(record("a2"), token("t1"))
    assert stores.certificates.get_certificate("a2") is None
    assert stores.certificates.count_certificates() == 1
    # A token used on its own is as used, and the other way round.
    assert stores.tokens.use_token("admin", "t2", NOW + timedelta(minutes=5), NOW)
    assert not stores.certificates.record_certificate(record("a3"), token("t2"))
    assert not stores.tokens.use_token("admin", "t1", NOW + timedelta(minutes=5), NOW)
    # Tokens are per provisioner.
    assert stores.certificates.record_certificate(record("a4"), token("t1", provisioner="other"))


def test_a_certificate_that_cannot_be_stored_leaves_its_token_unused(stores: Stores) -> None:
    """Certificate and token are one commit: a failing certificate (here a serial already
    stored) marks no token used."""
    assert stores.certificates.record_certificate(record("a1"))
    with pytest.raises(Exception, match="UNIQUE"):
        stores.certificates.record_certificate(record("a1", subject="CN=again"), token("t1"))
    assert stores.tokens.count_used_tokens() == 0
    assert stores.certificates.record_certificate(record("a2"), token("t1"))
    stored = stores.certificates.get_certificate("a1")
    assert stored is not None and stored.subject == "CN=a1"


def test_pages_and_counts(stores: Stores) -> None:
    for n in range(5):
        stores.certificates.record_certificate(record(f"c{n}", created_at=NOW + timedelta(n)))
    assert stores.certificates.count_certificates() == 5
    page = stores.certificates.list_certificates(limit=2, offset=1)
    assert [r.serial for r in page] == ["c1", "c2"]


def test_certificates_of_a_device_and_of_a_provisioner_are_the_active_unexpired_ones(
    stores: Stores,
) -> None:
    device = "urn:ek:sha256:dd"
    expired = NOW - timedelta(seconds=1)
    for serial, changes in [
        ("d1", {"device": device}),
        ("d2", {"device": device, "not_after": expired}),
        ("d3", {"device": device, "provisioner_name": "account:wifi"}),
        ("d4", {"device": "urn:ek:sha256:other", "provisioner_name": "account:wifi"}),
    ]:
        stores.certificates.record_certificate(record(serial, **changes))
    assert stores.certificates.revoke(revocation("d1"))
    assert [r.serial for r in stores.certificates.certificates_of_device(device, NOW)] == ["d3"]
    of_wifi = stores.certificates.certificates_of_provisioner("account:wifi", NOW)
    assert [r.serial for r in of_wifi] == ["d3", "d4"]


def test_a_certificate_is_revoked_once(stores: Stores) -> None:
    stores.certificates.record_certificate(record("e1"))
    stores.certificates.record_certificate(record("e2", issuer="tls"))
    stores.certificates.record_certificate(record("e3", not_after=NOW - timedelta(hours=1)))
    assert stores.certificates.revoke(revocation("e1"))
    assert not stores.certificates.revoke(revocation("e1"))
    assert not stores.certificates.revoke(revocation("ffff"))  # unknown
    assert stores.certificates.revoke(revocation("e2", issuer="tls"))
    assert stores.certificates.revoke(revocation("e3"))
    revoked = stores.certificates.get_certificate("e1")
    assert revoked is not None and revoked.status == "revoked"
    # The CRL of an issuer lists its revoked certificates that have not expired.
    entries = stores.certificates.revoked_entries("agent", NOW)
    assert [(e.serial, e.reason_code, e.revoked_at) for e in entries] == [(0xE1, 1, NOW)]
    assert [e.serial for e in stores.certificates.revoked_entries("tls", NOW)] == [0xE2]
