"""The oidc section's table: a person's certificate through the OIDC provisioner (RS256 and
ES256 ID tokens) in process and through each host, per concurrency level, next to the
crypto-only cost and, in process, the JWK provisioner's signing of the same run."""

from __future__ import annotations

from typing import Any

from .format import Table, kind_table, kind_table_end, kind_timing_note


def oidc_table(oidc: dict[str, Any]) -> Table:
    params = oidc.get("parameters", {})
    t = kind_table(
        "OIDC provisioner: POST /1.0/sign with an ID token, per certificate",
        oidc,
        ("÷ JWK", "ratio_to_jwk"),
    )
    inprocess = oidc.get("inprocess") or {}
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
        kind_timing_note(
            "parse_csr + Authority.signing.sign",
            params,
            "jwk = the JWK provisioner's signing in the same repetitions (÷ JWK divides by its"
            " CPU); ",
        )
    )
    fetched = inprocess.get("provider_fetches_at_warmup")
    if fetched:
        during = oidc.get("provider_fetches_during_rounds")
        t.notes.append(
            f"provider requests (discovery, JWKS): {sum(fetched.values())} at a CA's first"
            f" request, {sum(during.values()) if during else 0} during the timed rounds"
        )
    kind_table_end(t, oidc)
    return t
