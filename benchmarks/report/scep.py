"""The scep section's table: PKIOperation requests (PKCSReq, CertPoll, a resent PKCSReq) in
process and through each host, per concurrency level, next to the crypto-only cost."""

from __future__ import annotations

from typing import Any

from .format import Table, kind_table, kind_table_end, kind_timing_note


def scep_table(scep: dict[str, Any]) -> Table:
    params = scep.get("parameters", {})
    t = kind_table("SCEP PKIOperation: PKCSReq enrolments, CertPoll and resends, per request", scep)
    t.notes.append(
        f"provisioner {scep.get('provisioner')!r} with a static challenge; issuer"
        f" {params.get('issuer_key_type')}, RA {params.get('ra_key')}, client"
        f" {params.get('client_key')}; {params.get('content_encryption')}; every message"
        " built before the clock starts; every reply read afterwards (RA signature, SUCCESS,"
        " the certificate for the client's key)"
    )
    t.notes.append(
        "pkcsreq = a new enrolment (certificate signed and stored, SQLite synchronous=full);"
        " certpoll = CertPoll of an issued transaction; resend = the same PKCSReq again: the"
        " idempotent answer from the store"
    )
    t.notes.append(kind_timing_note("SCEPService.pki_operation", params))
    kind_table_end(t, scep)
    return t
