"""The DER the SCEP builders produce, pinned byte for byte: a fixed key, a fixed time and
CountingRandom give one output, and a change in how messages are assembled must not alter it.

RSA key transport pads with fresh random bytes, so where an envelope is inside the output
the encrypted content key, and what depends on it (the messageDigest attribute and the
signature over the attributes), are masked before comparing; every other byte counts."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from engine.ports import CountingRandom
from engine.scep import (
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIStatus,
    Signer,
    build_cert_rep,
    build_pki_message,
    certs_only,
    decrypt_envelope,
)
from engine.scep.envelope import envelope

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_KEY = b"""-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCaItzgpMcaNv8C
grFTSoBWlMC8bBkJot0ntKQo8aIBjHfgpk3NKTZmJvsKuvVAUGPYmm3M285ChvHi
VqDyWT+5+DIWF+stx22o3QF+inVXlG44WH8sVGTe38yr8aa4qvx7TlqcsRyAJpND
9kqGJobbd/ufMUvG4bcRzuyfnwGE+IgZqZpHKdcgWrdi24XNv1sGjP7pfzSFknzB
sS4W2ZEr39fvbSAqgMY/4IRFbZP3FTazVVy52FS2f22D2MHvf0qZFc59ntF+b888
dn6tJNAUFGRomQ3doY/xxvxl6GqzFEPjaXUlUCKNd3lWS1s1eJgMKIcReTJUoEsb
V115vNA1AgMBAAECggEAD9tCScHp0aKSvVlgkKb7aOzInxmnwbwFcE4/DQ8+kVY4
Bt5U5qQ0unGMJeBx1nnuq5vHa+m44FMtkxFCYWwZCDKmRGuVgBIiD9scij4IMEhO
xnEkNBVCg0MWtSGY+ypr6ut2muQFgJF3WOh/ZimUegNv2UKi/wS9ZpGY+hrLdzhJ
M3CR2IPVDzFV2d5IhGpJyen/46xnmsl0MLpeq/fFVxz8zS6LJ/7BsoG5cFvlUFk4
vHGCdOB5FvNIBxMivwlRVNTUxZRYdT8/P5HZz4kpuQdWkQl2wnx9mRsDjOT54FwD
+JPTLsJ22vwEQC/x0DAmWBAq8XFiuuhjf6H3+3bKyQKBgQDNUvzhvSPrTNgplujS
XT5uskIUrraSXOq2MsTpnI6mf2pwG7ll7lkN2qTD6wYgvPjRkSXxpsA+7h36oNkG
kowJcQolkWNvakStV6bLIRh0UK194fEKLBZJhNLVVG29tCjzXk5f+YHmzOmVnDiy
JNM2DNtrnUqEkdrs5NwHggnk7wKBgQDALakaT6LVTvn4hnTGUo1LP7huOp7kkAxJ
GG6utSF6jMdGLaRf1/28csXkRT3YrREJ3Th/Qqyg7hwTpGDxux2duVDvE9TIxIRE
8qq9vx7DuG0RMOqy+B9bx9U4KJ8ZPPfBppqZIsgsNHv/DuR83KCUCO0nixqzEMv1
o9u4fFcFGwKBgBorZqHa+pYGAFMksd4GFmwDelqqfgifoSbBx8lCtAfSm51YW0P7
ogwa/v8dmHVZwJjtWBm5uC0NKnMER0UILqMRbkqlgjf0Ina5gj/HoxdIJSSzRIaY
YerS7BBWp3oTWVjTf0fKRF1HZsoz1CIYgXcVIm5P6OyGrpGdBdJLJ7mvAoGBAKVT
orKb5/2R38JKCZPD2QHvY36Qt7jxo2AOwMlT0eVXzuc0xMAfVI4WPuBOIRKScKIH
yl7QwSoBLe5H746F5siVcGb8rIW7af7WtMRf8tt1gX7UklQ82N1gYLHbYGOZ65qQ
9VbgcUx2KmYWLcKtGwe/ViY6qVF7FbvQp2lirooZAoGADhpp3pCrzZiZx0tpfd9F
DVLr358ly08H1+6rvfW7rkF86ijcg33/mqnNq1ZsM0N+BrAAGX6eFs/CHGDPAvwY
gORV28KLdGowkLsvmmGseh7YFSzRHG7vZkPmVHAd5tSNwFq1E3TJFMFAs9ZG+wPK
JWXed8JqgA/zTn1nW69Vhog=
-----END PRIVATE KEY-----
"""


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(_KEY, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _identity(common_name: str, serial: int) -> Signer:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_key().public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(_key().public_key()), False)
        .sign(_key(), hashes.SHA256())
    )
    return Signer(certificate=certificate, key=_key())


@functools.cache
def _ra() -> Signer:
    return _identity("pinned RA", 0x5CE9)


@functools.cache
def _client() -> Signer:
    return _identity("pinned client", 7)


def _masked(der: bytes) -> bytes:
    """*der* with the randomised parts zeroed: an EnvelopedData's encrypted keys, and, in a
    SignedData whose content is one, the messageDigest and the signature."""
    info = cms.ContentInfo.load(der)
    secret: list[bytes] = []
    if info["content_type"].native == "enveloped_data":
        enveloped = info
    else:
        content = info["content"]["encap_content_info"]["content"].native
        if content is None or not content.startswith(b"\x30"):
            return der
        enveloped = cms.ContentInfo.load(content)
        signer_info = info["content"]["signer_infos"][0]
        secret.append(signer_info["signature"].native)
        for attribute in signer_info["signed_attrs"]:
            if attribute["type"].native == "message_digest":
                secret.append(attribute["values"][0].native)
    for recipient in enveloped["content"]["recipient_infos"]:
        secret.append(recipient.chosen["encrypted_key"].native)
    for value in secret:
        assert der.count(value) == 1
        der = der.replace(value, bytes(len(value)))
    return der


def _cert_rep(status: PKIStatus, **kwargs: object) -> bytes:
    return build_cert_rep(
        signer=_ra(),
        transaction_id="pinned-transaction",
        recipient_nonce=b"R" * 16,
        sender_nonce=b"S" * 16,
        status=status,
        now=NOW,
        random=CountingRandom(),
        **kwargs,  # type: ignore[arg-type]
    )


def _outputs() -> dict[str, bytes]:
    issued = certs_only([_client().certificate])
    return {
        "success": _cert_rep(PKIStatus.SUCCESS, content=issued, recipient=_client().certificate),
        "success-3des-sha1-chain": _cert_rep(
            PKIStatus.SUCCESS,
            content=issued,
            recipient=_client().certificate,
            encryption=ContentEncryption.DES3_CBC,
            digest="sha1",
            certificates=[_client().certificate, _ra().certificate],
        ),
        "failure": _cert_rep(
            PKIStatus.FAILURE, fail_info=FailInfo.BAD_REQUEST, fail_text="refused: é"
        ),
        "failure-no-nonce": build_cert_rep(
            signer=_ra(),
            transaction_id="t",
            recipient_nonce=None,
            sender_nonce=b"S" * 8,
            status=PKIStatus.FAILURE,
            now=datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC),
            random=CountingRandom(),
            digest="sha512",
            fail_info=FailInfo.BAD_TIME,
        ),
        "pending": _cert_rep(PKIStatus.PENDING),
        "request": build_pki_message(
            message_type=MessageType.PKCS_REQ,
            transaction_id="pinned-transaction",
            sender_nonce=b"N" * 16,
            content=b"a CSR" * 50,
            recipient=_ra().certificate,
            signer=_client(),
            now=NOW,
            random=CountingRandom(),
        ),
        "envelope-aes128-oaep": envelope(
            b"x" * 33,
            _ra().certificate,
            random=CountingRandom(),
            encryption=ContentEncryption.AES128_CBC,
            key_transport="oaep",
        ),
        "envelope-des-oaep-sha1": envelope(
            b"",
            _ra().certificate,
            random=CountingRandom(),
            encryption=ContentEncryption.DES_CBC,
            key_transport="oaep-sha1",
        ),
    }


# SHA-256 of each masked output.
PINNED = {
    "envelope-aes128-oaep": "4816217e27982dc9ca082f7494633f8295f4128000f3bdd74115cc10327c76c3",
    "envelope-des-oaep-sha1": "7f6998e9f93558aa9cd261279a635bad67b283351700c95f84a3a7cf984019c8",
    "failure": "10cc3facae074e48a65da622a0dcb90b8cb4dde503b06a0d778854eea133481f",
    "failure-no-nonce": "4ed7cbc64b2fa7fe554d334034b4f9dcd52ff59f1036ba1ab579e15a25c0a9dd",
    "pending": "23660e2615beca7e32aa1ca2c262c0c87bf18d024c6fc2714ef841fb93b3b9f0",
    "request": "38aeddaa058788e64e34dec059fcc0b1c4ff5b2db0eaf2e872970fbdd043fd8c",
    "success": "969426e7369d09f29857a1bfc513d6b41fc9d26e6920f824a59f2166b811d274",
    "success-3des-sha1-chain": "1507c747044cff1827e0ae848b160627d3aefd1e1a70bd3395ca14ede27566c1",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_output_is_pinned(name: str) -> None:
    assert hashlib.sha256(_masked(_outputs()[name])).hexdigest() == PINNED[name]


def test_every_output_is_pinned() -> None:
    assert sorted(_outputs()) == sorted(PINNED)


def test_pinned_envelopes_decrypt() -> None:
    outputs = _outputs()
    for name in ("envelope-aes128-oaep", "envelope-des-oaep-sha1"):
        plain = decrypt_envelope(
            outputs[name], _ra().certificate, _key(), allowed=frozenset(ContentEncryption)
        )
        assert plain == (b"x" * 33 if "aes" in name else b"")
