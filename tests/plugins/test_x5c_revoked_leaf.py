"""An X5C token signed with a certificate this CA has revoked is refused."""

from __future__ import annotations

import tomllib
import uuid

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import Unauthorized
from hosts.core.authority import Authority
from plugins.x5c.tokens import mint_x5c_token
from tests.conftest import CA, TokenFactory, new_csr, revoke_json, sign_json


def _with_x5c_provisioner(ca: CA) -> Authority:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(
        {"type": "X5C", "name": "devices-x5c", "issuer": "tls", "roots": ["certs/tls_ca.crt"]}
    )
    path.write_text(tomli_w.dumps(config))
    authority = Authority.load(ca.data_dir, ca.password)
    authority.set_base_urls(["https://ca.test"])
    return authority


def test_a_token_signed_with_a_revoked_leaf_is_refused(ca: CA, token: TokenFactory) -> None:
    authority = _with_x5c_provisioner(ca)
    try:
        key, _, csr_pem = new_csr("leaf.example")
        issued = sign_json(authority, {"csr": csr_pem, "ott": token("leaf.example")})
        leaf = x509.load_pem_x509_certificate(issued["crt"].encode())
        tls_ca = x509.load_pem_x509_certificate(issued["ca"].encode())  # JWK: the TLS CA

        def x5c_token() -> str:
            return mint_x5c_token(
                key,  # type: ignore[arg-type]
                [leaf, tls_ca],
                provisioner="devices-x5c",
                subject="leaf.example",
                audience="https://ca.test/1.0/sign",
                now=authority.clock.now(),
                jti=uuid.uuid4().hex,
            )

        _, _, csr2 = new_csr("leaf.example")
        assert sign_json(authority, {"csr": csr2, "ott": x5c_token()})["crt"]
        revoke_json(
            authority,
            {"serial": str(leaf.serial_number), "reasonCode": 1},
            leaf.public_bytes(Encoding.DER),
        )
        before = authority.stores.certificates.count_certificates()
        _, _, csr3 = new_csr("leaf.example")
        with pytest.raises(Unauthorized, match="revoked"):
            sign_json(authority, {"csr": csr3, "ott": x5c_token()})
        assert authority.stores.certificates.count_certificates() == before
    finally:
        authority.close()
