"""The scep section's table: PKIOperation requests (PKCSReq, CertPoll, a resent PKCSReq) in
process and through each host, per concurrency level, next to the crypto-only cost."""

from __future__ import annotations

from typing import Any

from .format import NOISY_NOTE, Table, lookup, number


def _rate(figures: dict[str, Any], spread_key: str) -> str:
    text = number(figures.get("requests_per_s"))
    return f"{text}~" if lookup(figures, spread_key, "noisy") else text


def scep_table(scep: dict[str, Any]) -> Table:
    params = scep.get("parameters", {})
    t = Table(
        "SCEP PKIOperation: PKCSReq enrolments, CertPoll and resends, per request",
        [
            "where",
            "kind",
            "concurrency",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "crypto µs",
            "crypto÷CPU",
            "rest µs",
            "errors",
        ],
    )
    inprocess = scep.get("inprocess") or {}
    for kind, figures in inprocess.get("kinds", {}).items():
        t.rows.append(
            [
                "in process",
                kind,
                "1",
                str(figures.get("calls")),
                _rate(figures, "per_repetition"),
                "-",
                "-",
                number(figures.get("cpu_us_per_request"), 0),
                number(figures.get("crypto_us"), 0),
                number(figures.get("crypto_share"), 2),
                number(figures.get("rest_us"), 0),
                "0",
            ]
        )
    for host, result in scep.get("hosts", {}).items():
        for kind, figures in result.get("kinds", {}).items():
            for level in figures.get("levels", []):
                t.rows.append(
                    [
                        f"{host} host",
                        kind,
                        str(level["concurrency"]),
                        str(level["requests"]),
                        _rate(level, "per_round"),
                        number(lookup(level, "latency_ms", "p50"), 2),
                        number(lookup(level, "latency_ms", "p99"), 2),
                        number(level.get("server_cpu_us_per_request"), 0),
                        number(level.get("crypto_us"), 0),
                        number(level.get("crypto_share"), 2),
                        number(level.get("rest_us"), 0),
                        str(level["errors"]),
                    ]
                )
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
    t.notes.append(
        f"in process: SCEPService.pki_operation one call at a time, median of"
        f" {params.get('inprocess_repetitions')} repetitions, CPU = this thread's; through"
        f" a host: median of {params.get('rounds')} rounds (hosts, kinds and levels"
        " interleaved), latencies pooled, CPU = user + system of the server process ÷"
        " requests (the load generator excluded)"
    )
    for kind, figures in inprocess.get("kinds", {}).items():
        crypto = figures.get("crypto") or {}
        parts = ", ".join(
            f"{name.removesuffix('_us').replace('_', ' ')} {number(value, 0)}"
            for name, value in crypto.items()
            if name.endswith("_us") and name != "sum_us"
        )
        t.notes.append(f"crypto-only µs, {kind}: {parts} (timed alone with cryptography)")
    pinning = params.get("pinning")
    if pinning:
        t.notes.append(
            f"servers pinned to CPU {pinning['server_cpus']}, load generator to CPU"
            f" {pinning['client_cpus']}"
        )
    if any(row[4].endswith("~") for row in t.rows):
        t.notes.append(NOISY_NOTE)
    return t
