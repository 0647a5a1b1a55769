"""The accounts section's table: account-certificate issuance and renewal through the raw
host, per kind and concurrency level, next to the crypto-only cost of the same operation."""

from __future__ import annotations

from typing import Any

from .format import NOISY_NOTE, Table, crypto_notes, level_cells, lookup, number

#: The issue 13 target: server CPU per account certificate, µs.
TARGET_US = 600


def accounts_table(accounts: dict[str, Any]) -> Table:
    params = accounts.get("parameters", {})
    t = Table(
        "Account certificates through the raw host: issuance and renewal (mTLS), per certificate",
        [
            "kind",
            "concurrency",
            "requests",
            "certs/s",
            "p50 ms",
            "p99 ms",
            "server CPU µs/cert",
            "crypto µs",
            "crypto÷CPU",
            "client CPU µs/cert",
            "errors",
        ],
    )
    for kind, figures in accounts.get("kinds", {}).items():
        crypto = lookup(figures, "crypto", "sum_us")
        for level in figures.get("levels", []):
            cpu = level.get("server_cpu_us_per_certificate")
            share = (
                crypto / cpu
                if isinstance(crypto, int | float) and isinstance(cpu, int | float) and cpu
                else None
            )
            t.rows.append(
                [
                    kind,
                    *level_cells(level, "certificates_per_s"),
                    number(cpu, 0),
                    number(crypto, 0),
                    number(share, 2),
                    number(level.get("client_cpu_us_per_certificate"), 0),
                    str(level["errors"]),
                ]
            )
    account = accounts.get("account", {})
    t.notes.append(
        f"one device holding a device certificate from the Agent CA, the account"
        f" {account.get('name')!r} ({account.get('provisioner')}); issuance = POST /1.0/sign"
        " with an X5C token signed by the device key and a CSR for a fresh P-256 key;"
        " renewal = POST /1.0/renew over mutual TLS, each connection presenting an account"
        " certificate of its own; keep-alive connections, handshakes untimed"
    )
    t.notes.append(
        f"median of {params.get('rounds')} rounds (kinds and levels interleaved); latencies"
        " pooled; server CPU = user + system of the server process ÷ certificates (the load"
        f" generator excluded); target ≤ {TARGET_US} µs per certificate"
    )
    t.notes.extend(crypto_notes(accounts.get("kinds", {})))
    if any(row[3].endswith("~") for row in t.rows):
        t.notes.append(NOISY_NOTE)
    return t
