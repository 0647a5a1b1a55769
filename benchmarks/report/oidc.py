"""The oidc section's table: a person's certificate through the OIDC provisioner (RS256 and
ES256 ID tokens) in process and through each host, per concurrency level, next to the
crypto-only cost and, in process, the JWK provisioner's signing of the same run."""

from __future__ import annotations

from typing import Any

from .format import NOISY_NOTE, Table, lookup, number


def _rate(figures: dict[str, Any], spread_key: str) -> str:
    text = number(figures.get("requests_per_s"))
    return f"{text}~" if lookup(figures, spread_key, "noisy") else text


def oidc_table(oidc: dict[str, Any]) -> Table:
    params = oidc.get("parameters", {})
    t = Table(
        "OIDC provisioner: POST /1.0/sign with an ID token, per certificate",
        [
            "where",
            "kind",
            "concurrency",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "÷ JWK",
            "crypto µs",
            "crypto÷CPU",
            "rest µs",
            "errors",
        ],
    )
    inprocess = oidc.get("inprocess") or {}
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
                number(figures.get("ratio_to_jwk"), 2),
                number(figures.get("crypto_us"), 0),
                number(figures.get("crypto_share"), 2),
                number(figures.get("rest_us"), 0),
                "0",
            ]
        )
    for host, result in oidc.get("hosts", {}).items():
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
                        "-",
                        number(level.get("crypto_us"), 0),
                        number(level.get("crypto_share"), 2),
                        number(level.get("rest_us"), 0),
                        str(level["errors"]),
                    ]
                )
    keys = params.get("provider_keys") or {}
    t.notes.append(
        f"provisioner {oidc.get('provisioner')!r} (client {oidc.get('client_id')!r}, a verified"
        " email of the admitted domain, an admitted group); the provider served on 127.0.0.1"
        f" by the run, RS256 with {keys.get('RS256')}, ES256 with {keys.get('ES256')}; issuer"
        f" {params.get('issuer_key_type')} ({params.get('issuer')} CA), client keys"
        f" {params.get('client_key_type')}, CSRs with an empty subject; every token and CSR"
        " made before the clock starts; every reply read afterwards (201, issued by the TLS CA,"
        " naming the token's email)"
    )
    t.notes.append(
        f"in process: parse_csr + Authority.signing.sign one call at a time, median of"
        f" {params.get('inprocess_repetitions')} repetitions, CPU = this thread's; jwk = the"
        " JWK provisioner's signing in the same repetitions (÷ JWK divides by its CPU);"
        f" through a host: median of {params.get('rounds')} rounds (hosts, kinds and levels"
        " interleaved), latencies pooled, CPU = user + system of the server process ÷"
        " requests (the load generator excluded)"
    )
    fetched = inprocess.get("provider_fetches_at_warmup")
    if fetched:
        during = oidc.get("provider_fetches_during_rounds")
        t.notes.append(
            f"provider requests (discovery, JWKS): {sum(fetched.values())} at a CA's first"
            f" request, {sum(during.values()) if during else 0} during the timed rounds"
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
