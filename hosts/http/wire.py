"""The JSON wire format of devid's own API: request bodies parsed into the services'
typed requests, and their results written back as JSON.

Everything a client sends is checked here before a service sees it: field types, sizes,
serial numbers, reason codes, times; a bad field is a ``BadRequest`` (400) naming it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from engine.attestation import AttestRequest
from engine.attestation.session import parse_answer
from engine.csr import parse_csr
from engine.durations import parse_time_or_duration
from engine.errors import BadRequest
from engine.pipeline import IssuedCertificate
from hosts.service.certificates import CertificateDetail, CertificatePage
from hosts.service.revocation import RevokeRequest
from hosts.service.signing import SignRequest
from hosts.store import AuditEvent, AuditQuery, CertificateRecord

MAX_REASON_LENGTH = 512
# RFC 5280 CRLReason codes only a CA may use: cACompromise, (unused), removeFromCRL.
CA_ONLY_CODES = (2, 7, 8)


def string_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    """The string field *name*; None when absent or empty and not *required*."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def required_string(body: Mapping[str, Any], name: str) -> str:
    value = string_field(body, name)
    if value is None:  # string_field raises for a required field; kept for the type
        raise BadRequest(f"field {name!r} is required")
    return value


def parse_serial(value: Any) -> int:
    """A serial as clients send it: decimal (step's form) or 0x-prefixed hex."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise BadRequest("field 'serial' must be a decimal string")
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        raise BadRequest(f"serial {value!r} is not a number") from None
    if number <= 0:
        raise BadRequest("serial must be positive")
    return number


def parse_reason(body: Mapping[str, Any]) -> tuple[int, str]:
    """``reasonCode`` and ``reason`` of a revocation request; BadRequest if invalid."""
    reason = body.get("reason")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise BadRequest("field 'reason' must be a string")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadRequest("reason is too long")
    reason_code = body.get("reasonCode", 0)
    if (
        isinstance(reason_code, bool)
        or not isinstance(reason_code, int)
        or not (0 <= reason_code <= 10 and reason_code not in CA_ONLY_CODES)
    ):
        raise BadRequest("reasonCode must be an RFC 5280 CRLReason other than CA-only codes")
    return reason_code, reason


# --- /1.0/sign -------------------------------------------------------------------------------


def sign_request(body: Mapping[str, Any], now: datetime) -> SignRequest:
    """``{csr, ott, notBefore?, notAfter?}``; the CSR's signature is checked here."""
    csr_text = required_string(body, "csr")
    credential = required_string(body, "ott")
    not_before = parse_time_or_duration(body.get("notBefore"), now)
    not_after = parse_time_or_duration(body.get("notAfter"), now)
    return SignRequest(
        csr=parse_csr(csr_text), credential=credential, not_before=not_before, not_after=not_after
    )


def chain_json(issued: IssuedCertificate) -> dict[str, Any]:
    """``{crt, ca, certChain}``: the certificate, its issuer, and the chain to the root."""
    leaf = issued.pem
    issuer_chain = issued.issuer.chain_pem
    return {"crt": leaf, "ca": issuer_chain[0], "certChain": [leaf, *issuer_chain]}


# --- /1.0/revoke and the admin revocation ----------------------------------------------------


def revoke_request(body: Mapping[str, Any]) -> RevokeRequest:
    """``{serial, ott?, reasonCode?, reason?}``."""
    serial = parse_serial(body.get("serial"))
    credential = string_field(body, "ott", required=False)
    reason_code, reason = parse_reason(body)
    return RevokeRequest(
        serial=serial, reason_code=reason_code, reason=reason, credential=credential
    )


def admin_revocation_json(
    record: CertificateRecord, serial: int, reason_code: int, admin: str
) -> dict[str, Any]:
    return {
        "status": "ok",
        "serial": str(serial),
        "issuer": record.issuer,
        "reasonCode": reason_code,
        "revokedBy": admin,
    }


# --- the certificate inventory (/api/v1/certificates) ---------------------------------------


def certificate_json(record: CertificateRecord, status: str) -> dict[str, Any]:
    """One certificate in a listing; *status* as judged now (active, revoked, expired)."""
    return {
        "serial": record.serial,
        "serialNumber": str(int(record.serial, 16)),
        "issuer": record.issuer,
        "subject": record.subject,
        "sans": list(record.sans),
        "provisioner": record.provisioner_name,
        "provisionerType": record.provisioner_type,
        "device": record.device,
        "notBefore": record.not_before.isoformat(),
        "notAfter": record.not_after.isoformat(),
        "createdAt": record.created_at.isoformat() if record.created_at else None,
        "status": status,
    }


def certificate_page_json(page: CertificatePage) -> dict[str, Any]:
    """``{certificates, total, limit, offset, nextOffset}``, newest first."""
    return {
        "certificates": [certificate_json(r, page.status(r)) for r in page.certificates],
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "nextOffset": page.next_offset,
    }


def certificate_detail_json(detail: CertificateDetail) -> dict[str, Any]:
    """``{certificate, chain, device, account, renewedFrom, renewedBy, revocation}``."""
    record = detail.record
    revocation = detail.revocation
    renewed_from: dict[str, Any] | None = None
    if detail.renewed_from_record is not None:
        previous = detail.renewed_from_record
        renewed_from = certificate_json(previous, detail.status_of(previous))
    elif detail.renewed_from is not None:  # renewed from a certificate no longer stored
        renewed_from = {"serial": detail.renewed_from}
    return {
        "certificate": {
            **certificate_json(record, detail.status),
            "account": detail.account_name,
            "evidence": record.evidence,
        },
        "chain": list(detail.chain_pem),
        "device": detail.device.to_json() if detail.device is not None else None,
        "account": detail.account.to_json() if detail.account is not None else None,
        "renewedFrom": renewed_from,
        "renewedBy": [certificate_json(r, detail.status_of(r)) for r in detail.renewed_by],
        "revocation": None
        if revocation is None
        else {
            "revokedAt": revocation.revoked_at.isoformat(),
            "reasonCode": revocation.reason_code,
            "reason": revocation.reason,
            "revokedBy": revocation.revoked_by,
        },
    }


# --- the audit log (/api/v1/audit) -----------------------------------------------------------


def audit_page_json(events: Sequence[AuditEvent], total: int, query: AuditQuery) -> dict[str, Any]:
    """``{events, total, limit, offset, nextOffset}``, newest first; each event
    ``{id, time, actor, action, target, result, details}``."""
    following = query.offset + query.limit
    return {
        "events": [e.to_json() for e in events],
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "nextOffset": following if following < total else None,
    }


# --- the Attestation CA ----------------------------------------------------------------------


def attest_request(body: Any) -> AttestRequest:
    return AttestRequest.parse(body)


def activation_secret(body: Any) -> bytes:
    """``{"secret": base64}``: what the TPM decrypted."""
    return parse_answer(body)


def ak_chain_json(issued: IssuedCertificate) -> dict[str, Any]:
    """``{"chain": [base64 DER, ...]}``: the AK certificate and its issuers."""
    return {
        "chain": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in issued.chain]
    }
