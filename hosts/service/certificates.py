"""The certificate inventory: which certificates this CA issued, and one in detail.

:meth:`CertificateInventory.list` reads a filtered page (device, account, provisioner,
issuer, status, a subject or SAN substring), newest first; :meth:`CertificateInventory.show`
one certificate with its chain to the root, the device and account it was issued for,
its renewal lineage and its revocation. The admin API (``/api/v1/certificates``) and
``devid cert`` call it; nothing here changes a certificate.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from engine.accounts import PROVISIONER_PREFIX, Account
from engine.durations import parse_duration
from engine.errors import BadRequest, NotFound
from engine.inventory import Device, check_text, device_ek_urn
from engine.ports import Clock
from hosts.store import CertificateRecord, Revocation, Stores
from hosts.store.certificates import CERTIFICATE_STATUSES, CertificateQuery

MAX_PAGE = 500
DEFAULT_PAGE = 100
#: How far ahead ``status=expiring`` looks when no window is given.
DEFAULT_EXPIRING = timedelta(days=30)

#: The query parameters :func:`certificate_query` reads.
QUERY_KEYS = frozenset(
    {"device", "account", "provisioner", "issuer", "status", "expiring", "search", "limit",
     "offset"}
)  # fmt: skip


class IssuerChain(Protocol):
    """An issuing CA as the inventory needs it: its certificate and parents as PEM."""

    @property
    def chain_pem(self) -> tuple[str, ...]: ...


class CertificateSource(Protocol):
    """What the inventory reads: the stores, the clock, and the CA certificates (the
    shared :class:`hosts.service.ca.CA` is one; ``devid cert`` builds one from the data
    directory without the CA keys)."""

    @property
    def stores(self) -> Stores: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def root_pem(self) -> str: ...

    @property
    def issuers(self) -> Mapping[str, IssuerChain]: ...


def pem_certificate(der: bytes) -> str:
    """*der* as a PEM ``CERTIFICATE`` block."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def certificate_status(record: CertificateRecord, now: datetime) -> str:
    """``revoked``, ``expired`` or ``active``, as a listing shows it at *now*."""
    if record.status == "revoked":
        return "revoked"
    if record.not_after <= now:
        return "expired"
    return record.status


@attrs.frozen
class CertificatePage:
    """One page of a listing; *now* is when the statuses were judged."""

    certificates: tuple[CertificateRecord, ...]
    total: int
    limit: int
    offset: int
    now: datetime

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.limit
        return end if end < self.total else None

    def status(self, record: CertificateRecord) -> str:
        return certificate_status(record, self.now)


@attrs.frozen
class CertificateDetail:
    """One certificate and what the CA knows around it.

    *chain_pem* runs from the certificate to the root (the issuer's part is missing if
    that issuer is no longer configured). *renewed_from* is the serial this certificate
    renewed (None if it was not a renewal) and *renewed_from_record* that certificate
    where it is still stored; *renewed_by* the certificates that renewed this one.
    *device* and *account* are what the inventory holds now (None if removed or none);
    *now* is when *status* was judged.
    """

    record: CertificateRecord
    status: str
    chain_pem: tuple[str, ...]
    device: Device | None
    account: Account | None
    account_name: str | None
    renewed_from: str | None
    renewed_from_record: CertificateRecord | None
    renewed_by: tuple[CertificateRecord, ...]
    revocation: Revocation | None
    now: datetime

    def status_of(self, record: CertificateRecord) -> str:
        """The status of *record* (this certificate's or one of its lineage) at ``now``."""
        return certificate_status(record, self.now)


def _limit(params: Mapping[str, str]) -> tuple[int, int]:
    try:
        limit = int(params.get("limit") or DEFAULT_PAGE)
        offset = int(params.get("offset") or 0)
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_PAGE} and offset >= 0")
    return limit, offset


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name) or None
    return check_text(value, name) if value is not None else None


def certificate_query(params: Mapping[str, str]) -> CertificateQuery:
    """A query from the API's (or the command line's) parameters: ``device`` (its EK
    URN, or any other form of its identifier devid prints), ``account``, ``provisioner``,
    ``issuer``, ``status`` (active, revoked, expired, expiring), ``expiring`` (a duration
    such as ``7d``; alone, it means ``status=expiring``), ``search``, ``limit`` (1..500)
    and ``offset``. BadRequest names a bad one."""
    unknown = sorted(set(params) - QUERY_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown filter {', '.join(unknown)}; filters: {', '.join(sorted(QUERY_KEYS))}"
        )
    limit, offset = _limit(params)
    status = params.get("status") or None
    if status is not None and status not in CERTIFICATE_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(CERTIFICATE_STATUSES)}")
    window = DEFAULT_EXPIRING
    expiring = params.get("expiring") or None
    if expiring is not None:
        window = parse_duration(expiring)
        if window <= timedelta(0):
            raise BadRequest("expiring must be a positive duration such as 7d")
        if status is None:
            status = "expiring"
        elif status != "expiring":
            raise BadRequest("expiring goes with status=expiring (or no status)")
    device = params.get("device") or None
    return CertificateQuery(
        device=device_ek_urn(device) if device is not None else None,
        account=_text(params, "account"),
        provisioner=_text(params, "provisioner"),
        issuer=_text(params, "issuer"),
        status=status,
        expiring_within=window,
        search=_text(params, "search"),
        limit=limit,
        offset=offset,
    )


class CertificateInventory:
    """Reads the certificates of one CA (see the module docstring)."""

    def __init__(self, ca: CertificateSource) -> None:
        self.ca = ca

    def list(self, query: CertificateQuery) -> CertificatePage:
        """The page of certificates *query* asks for, newest first."""
        now = self.ca.clock.now()
        records, total = self.ca.stores.certificates.find_certificates(query, now)
        return CertificatePage(tuple(records), total, query.limit, query.offset, now)

    def of_device(self, ek_urn: str, *, limit: int = MAX_PAGE) -> CertificatePage:
        """Every certificate issued to the device *ek_urn* (up to *limit*), newest first."""
        return self.list(CertificateQuery(device=device_ek_urn(ek_urn), limit=limit))

    def show(self, serial: str) -> CertificateDetail:
        """The certificate *serial* (lowercase hex, as stored) in detail; NotFound if this
        CA has no record of it."""
        certificates = self.ca.stores.certificates
        record = certificates.get_certificate(serial)
        if record is None:
            raise NotFound(f"no certificate with serial {int(serial, 16)} (0x{serial})")
        now = self.ca.clock.now()
        renewed_from = record.evidence.get("renewed_from")
        if not isinstance(renewed_from, str) or not renewed_from:
            renewed_from = None
        previous = certificates.get_certificate(renewed_from) if renewed_from else None
        account_name = _account_name(record)
        return CertificateDetail(
            record=record,
            status=certificate_status(record, now),
            chain_pem=self._chain(record),
            device=(
                self.ca.stores.devices.get_device(record.device)
                if record.device is not None
                else None
            ),
            account=(
                self.ca.stores.accounts.get_account(account_name)
                if account_name is not None
                else None
            ),
            account_name=account_name,
            renewed_from=renewed_from,
            renewed_from_record=previous,
            renewed_by=self._renewals(record, now),
            revocation=certificates.get_revocation(serial),
            now=now,
        )

    def _renewals(self, record: CertificateRecord, now: datetime) -> tuple[CertificateRecord, ...]:
        """The certificates that name *record* as renewed from. A renewal keeps its
        original's provisioner and device, so the search stays within the device's
        certificates (or the provisioner's), which the store has indexed."""
        if record.device is not None:
            query = CertificateQuery(
                device=record.device, renewed_from=record.serial, limit=MAX_PAGE
            )
        else:
            query = CertificateQuery(
                provisioner=record.provisioner_name, renewed_from=record.serial, limit=MAX_PAGE
            )
        found, _ = self.ca.stores.certificates.find_certificates(query, now)
        return tuple(found)

    def _chain(self, record: CertificateRecord) -> tuple[str, ...]:
        leaf = pem_certificate(record.der)
        issuer = self.ca.issuers.get(record.issuer)
        above = issuer.chain_pem if issuer is not None else ()
        root = self.ca.root_pem
        if above and above[-1].strip() == root.strip():
            return (leaf, *above)
        return (leaf, *above, root)


def _account_name(record: CertificateRecord) -> str | None:
    """The account an account certificate was issued for: its provisioner names it."""
    if record.provisioner_name.startswith(PROVISIONER_PREFIX):
        return record.provisioner_name[len(PROVISIONER_PREFIX) :]
    name = record.evidence.get("account")
    return name if isinstance(name, str) and name else None
