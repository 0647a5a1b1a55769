"""verify_chain remembers the signature checks between CA certificates, and nothing else:
a leaf's signature and every validity period are checked on each call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.chain import ChainError, verify_chain

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_after: datetime = NOW + timedelta(days=30),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_leaf_is_checked_each_time_behind_a_known_intermediate() -> None:
    root_key, mid_key, leaf_key = _key(), _key(), _key()
    root = _certificate("root", root_key, "root", root_key, ca=True)
    mid = _certificate("mid", mid_key, "root", root_key, ca=True)
    leaf = _certificate("leaf", leaf_key, "mid", mid_key, ca=False)
    assert verify_chain(leaf, [mid], [root], NOW) == [leaf, mid, root]
    forged = _certificate("leaf", leaf_key, "mid", _key(), ca=False)  # same names, other key
    with pytest.raises(ChainError, match="does not chain"):
        verify_chain(forged, [mid], [root], NOW)
    assert verify_chain(leaf, [mid], [root], NOW) == [leaf, mid, root]


def test_an_intermediate_of_another_key_is_not_taken_for_a_known_one() -> None:
    root_key, mid_key, leaf_key = _key(), _key(), _key()
    root = _certificate("root", root_key, "root", root_key, ca=True)
    mid = _certificate("mid", mid_key, "root", root_key, ca=True)
    assert verify_chain(_certificate("a", leaf_key, "mid", mid_key, ca=False), [mid], [root], NOW)
    # The same subject and key, signed by a stranger: a different certificate.
    rogue_mid = _certificate("mid", mid_key, "root", _key(), ca=True)
    leaf = _certificate("b", leaf_key, "mid", mid_key, ca=False)
    with pytest.raises(ChainError, match="does not chain"):
        verify_chain(leaf, [rogue_mid], [root], NOW)


def test_validity_is_checked_at_each_call() -> None:
    root_key, mid_key, leaf_key = _key(), _key(), _key()
    root = _certificate("root", root_key, "root", root_key, ca=True)
    mid = _certificate("mid", mid_key, "root", root_key, ca=True, not_after=NOW + timedelta(days=2))
    leaf = _certificate("leaf", leaf_key, "mid", mid_key, ca=False)
    assert verify_chain(leaf, [mid], [root], NOW) == [leaf, mid, root]
    with pytest.raises(ChainError, match=r"intermediate .* expired"):
        verify_chain(leaf, [mid], [root], NOW + timedelta(days=3))
