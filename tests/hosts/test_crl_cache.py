"""A CRL is built once and served until a revocation is stored (by any process sharing
the database) or it is an hour old: a fleet fetching it costs no signature per fetch, and
no revocation waits for the next build."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from engine.ports import FrozenClock
from hosts.core.authority import Authority
from hosts.service.revocation import CRL_LIFETIME, CRL_REFRESH
from tests.conftest import CA

from .helpers import issue_in_process


def listed(der: bytes) -> set[int]:
    return {entry.serial_number for entry in x509.load_der_x509_crl(der)}


def test_a_crl_is_kept_until_a_revocation_or_its_refresh(
    ca: CA, frozen_authority: Authority, clock: FrozenClock
) -> None:
    authority = frozen_authority
    first = issue_in_process(authority, ca.password, "one.example.com").certificate
    second = issue_in_process(authority, ca.password, "two.example.com").certificate
    crl = authority.revocation.crl("tls")
    assert listed(crl) == set()
    clock.advance(timedelta(minutes=5))
    assert authority.revocation.crl("tls") is crl  # the same CRL, not built again

    # A revocation in this process: the next CRL lists it.
    authority.revocation.admin_revoke(first.serial_number, 1, "stolen", "admin-token")
    after = authority.revocation.crl("tls")
    assert listed(after) == {first.serial_number}

    # A revocation by another process on the same database (the CLI, another worker).
    other = Authority.load(ca.data_dir, ca.password, clock=clock)
    try:
        other.revocation.admin_revoke(second.serial_number, 1, "lost", "cli:alice")
    finally:
        other.close()
    latest = authority.revocation.crl("tls")
    assert listed(latest) == {first.serial_number, second.serial_number}
    assert authority.revocation.crl("tls") is latest

    # An hour on, a new one is signed, its lifetime ahead of it again.
    clock.advance(CRL_REFRESH)
    refreshed = x509.load_der_x509_crl(authority.revocation.crl("tls"))
    assert refreshed.last_update_utc == clock.now()
    assert refreshed.next_update_utc == clock.now() + CRL_LIFETIME
    assert {e.serial_number for e in refreshed} == {first.serial_number, second.serial_number}
    # Each issuer has its own.
    assert authority.revocation.crl("agent") != authority.revocation.crl("tls")
