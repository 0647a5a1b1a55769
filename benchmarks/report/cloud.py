"""The cloud section's table: a virtual machine's first certificate through the GCP, AWS
and Azure provisioners in process and through each host, per concurrency level, next to
the crypto-only cost and, in process, the JWK provisioner's signing of the same run."""

from __future__ import annotations

from typing import Any

from .format import Table, kind_table, kind_table_end, kind_timing_note


def cloud_table(cloud: dict[str, Any]) -> Table:
    params = cloud.get("parameters", {})
    t = kind_table(
        "Cloud provisioners: POST /1.0/sign with an instance's identity, per certificate",
        cloud,
        ("÷ JWK", "ratio_to_jwk"),
    )
    t.notes.append(
        "one instance per request, trust on first use on; gcp: an identity token (RS256);"
        f" aws: an identity request with the document's {params.get('aws_form')} signature"
        " (PKCS#7, RSA-2048); azure: an identity request with a managed-identity token (RS256)"
        " and an attested document (PKCS#7 chained through an intermediate); the clouds' keys"
        " from loopback metadata servers of the run; issuer"
        f" {params.get('issuer_key_type')} ({params.get('issuer')} CA), client keys"
        f" {params.get('client_key_type')}; evidence made before the clock, identity requests"
        " (5 minutes) signed before each repetition or round, untimed; every reply read"
        " afterwards (201, issued by the TLS CA, naming the instance)"
    )
    t.notes.append(
        kind_timing_note(
            "parse_csr + Authority.signing.sign",
            params,
            "jwk = the JWK provisioner's signing in the same repetitions (÷ JWK divides by its"
            " CPU); ",
        )
    )
    kind_table_end(t, cloud)
    return t
