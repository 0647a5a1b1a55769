"""Finding certificates: each filter, the statuses judged at a given time, pages, and
revocation records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import attrs
import pytest

from hosts.store import CertificateRecord, Revocation, Stores
from hosts.store.certificates import CertificateQuery

from .records import NOW, record

EK_A = "urn:ek:sha256:" + "A" * 43 + "="
EK_B = "urn:ek:sha256:" + "B" * 43 + "="


def serials(found: Sequence[CertificateRecord]) -> list[str]:
    return [r.serial for r in found]


def find(stores: Stores, at: timedelta = timedelta(0), **filters: Any) -> list[str]:
    records, total = stores.certificates.find_certificates(CertificateQuery(**filters), NOW + at)
    assert total >= len(records)
    return serials(records)


@pytest.fixture
def issued(stores: Stores) -> Stores:
    """Six certificates, one a minute: a1 first, a6 last."""
    minute = timedelta(minutes=1)
    written = [
        record("a1", evidence={"device": EK_A}, subject="CN=laptop-1", sans=("bücher.example",)),
        record("a2", evidence={"device": EK_B}, issuer="account", sans=("vpn.example.net",)),
        record(
            "a3",
            evidence={"account": "wifi", "device": EK_A},
            issuer="account",
            provisioner_type="ACCOUNT",
            provisioner_name="account:wifi",
            subject="CN=wifi-laptop",
        ),
        record("a4", provisioner_name="acme", not_after=NOW + timedelta(days=10)),
        record("a5", not_after=NOW + timedelta(hours=1), sans=("50%_off.example", 'say "hi"')),
        record("a6", evidence={"device": EK_A, "renewed_from": "a1"}, issuer="attestation"),
    ]
    for index, certificate in enumerate(written):
        assert stores.certificates.record_certificate(
            attrs.evolve(certificate, created_at=NOW + index * minute)
        )
    return stores


def test_newest_first_without_filters(issued: Stores) -> None:
    assert find(issued) == ["a6", "a5", "a4", "a3", "a2", "a1"]


def test_by_device_account_provisioner_and_issuer(issued: Stores) -> None:
    assert find(issued, device=EK_A) == ["a6", "a3", "a1"]
    assert find(issued, device=EK_B) == ["a2"]
    assert find(issued, account="wifi") == ["a3"]
    assert find(issued, account="vpn") == []
    assert find(issued, provisioner="acme") == ["a4"]
    assert find(issued, provisioner="account:wifi") == ["a3"]
    assert find(issued, issuer="account") == ["a3", "a2"]
    assert find(issued, issuer="attestation", device=EK_A) == ["a6"]
    assert find(issued, issuer="tls") == []


def test_search_matches_subject_or_san_taking_wildcards_literally(issued: Stores) -> None:
    assert find(issued, search="laptop") == ["a3", "a1"]
    assert find(issued, search="LAPTOP-1") == ["a1"]
    assert find(issued, search="vpn.example") == ["a2"]
    assert find(issued, search="50%_off") == ["a5"]
    assert find(issued, search="%") == ["a5"]
    assert find(issued, search="_") == ["a5"]
    assert find(issued, search="nowhere") == []
    # SANs are searched as written, whatever the store makes of quotes or non-ASCII text.
    assert find(issued, search='"hi"') == ["a5"]
    assert find(issued, search="bücher") == ["a1"]


def test_renewals_are_found_by_the_serial_they_renewed(issued: Stores) -> None:
    assert find(issued, renewed_from="a1") == ["a6"]
    assert find(issued, renewed_from="a1", device=EK_B) == []
    assert find(issued, renewed_from="a6") == []


def test_statuses_depend_on_the_time_asked(issued: Stores) -> None:
    revoked = Revocation("a2", "account", NOW, 1, "key compromise", "admin-token")
    assert issued.certificates.revoke(revoked)
    assert find(issued, status="revoked") == ["a2"]
    assert find(issued, status="active") == ["a6", "a5", "a4", "a3", "a1"]
    assert find(issued, status="expired") == []
    # Two hours on, a5 has ended.
    later = timedelta(hours=2)
    assert find(issued, later, status="expired") == ["a5"]
    assert find(issued, later, status="active") == ["a6", "a4", "a3", "a1"]
    # Two days on, only a4 (ten days) is left, and a revoked certificate stays revoked.
    assert find(issued, timedelta(days=2), status="active") == ["a4"]
    assert find(issued, timedelta(days=2), status="revoked") == ["a2"]
    assert find(issued, timedelta(days=2), status="expired") == ["a6", "a5", "a3", "a1"]


def test_expiring_looks_ahead_from_now_and_leaves_out_ended_and_revoked(issued: Stores) -> None:
    assert issued.certificates.revoke(Revocation("a1", "agent", NOW, 0, "", "admin-token"))
    two_hours = timedelta(hours=2)
    assert find(issued, status="expiring", expiring_within=two_hours) == ["a5"]
    assert find(issued, status="expiring", expiring_within=timedelta(days=1)) == [
        "a6",
        "a5",
        "a3",
        "a2",
    ]
    assert find(issued, status="expiring", expiring_within=timedelta(days=30)) == [
        "a6",
        "a5",
        "a4",
        "a3",
        "a2",
    ]
    # Three hours on, a5 has ended: expired, no longer expiring.
    assert find(issued, timedelta(hours=3), status="expiring", expiring_within=two_hours) == []
    assert find(issued, timedelta(days=9), status="expiring", expiring_within=two_hours) == []
    assert find(
        issued, timedelta(days=9), status="expiring", expiring_within=timedelta(days=1)
    ) == ["a4"]


def test_an_unknown_status_is_refused(issued: Stores) -> None:
    with pytest.raises(ValueError, match="status"):
        find(issued, status="valid")


def test_pages_count_every_match(issued: Stores) -> None:
    certificates = issued.certificates
    page, total = certificates.find_certificates(CertificateQuery(limit=2), NOW)
    assert (serials(page), total) == (["a6", "a5"], 6)
    page, total = certificates.find_certificates(CertificateQuery(limit=2, offset=4), NOW)
    assert (serials(page), total) == (["a2", "a1"], 6)
    page, total = certificates.find_certificates(CertificateQuery(limit=2, offset=6), NOW)
    assert (serials(page), total) == ([], 6)
    page, total = certificates.find_certificates(
        CertificateQuery(device=EK_A, limit=1, offset=1), NOW
    )
    assert (serials(page), total) == (["a3"], 3)


def test_the_revocation_of_a_certificate_reads_back(issued: Stores) -> None:
    assert issued.certificates.get_revocation("a1") is None
    revocation = Revocation("a1", "agent", NOW + timedelta(minutes=7), 1, "stolen", "admin-token")
    assert issued.certificates.revoke(revocation)
    assert issued.certificates.get_revocation("a1") == revocation
    assert issued.certificates.get_revocation("ff") is None
