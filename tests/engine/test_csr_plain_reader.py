"""engine.csr reads plain requests straight from the DER: it must agree with cryptography.

Every CSR here goes both ways, through the DER reader and through cryptography's
objects, and the common name, SANs and key must come out the same; requests the
reader does not handle must be handed to cryptography (and keep its errors).
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine import csr as csr_module
from engine.csr import parse_csr
from engine.errors import BadRequest

KEYS: dict[str, Any] = {
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-384": ec.generate_private_key(ec.SECP384R1()),
    "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    "RSA-2048": rsa.generate_private_key(65537, 2048),
}

WORDS = ["svc", "device-7", "Node_1", "a", "xn--bcher-kva", "host-42", "UPPER", "wifi"]


def random_general_name(rng: random.Random) -> x509.GeneralName:
    kind = rng.randrange(5)
    if kind == 0:
        return x509.DNSName(".".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))))
    if kind == 1:
        return x509.IPAddress(ipaddress.ip_address(rng.getrandbits(32)))
    if kind == 2:
        return x509.IPAddress(ipaddress.ip_address(rng.getrandbits(128)))
    if kind == 3:
        return x509.RFC822Name(f"{rng.choice(WORDS)}@Example.COM")
    return x509.UniformResourceIdentifier(f"urn:ek:sha256:{rng.choice(WORDS)}")


def random_subject(rng: random.Random) -> x509.Name:
    attributes = []
    for _ in range(rng.randint(0, 4)):
        choice = rng.randrange(4)
        if choice == 0:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, rng.choice([*WORDS, "dé"])))
        elif choice == 1:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Ltd"))
        elif choice == 2:
            attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "NZ"))
        else:
            attributes.append(
                x509.NameAttribute(
                    NameOID.COMMON_NAME,
                    rng.choice(["svc", "device-7", "a b", "HOST.example"]),
                    _type=x509.name._ASN1Type.PrintableString,
                )
            )
    return x509.Name(attributes)


def build(
    key_name: str,
    subject: x509.Name,
    names: list[x509.GeneralName] | None,
    *,
    critical: bool = False,
    extra: x509.ExtensionType | None = None,
) -> bytes:
    key = KEYS[key_name]
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=critical)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    algorithm = None if key_name == "Ed25519" else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


def both_ways(der: bytes) -> tuple[Any, Any]:
    csr = x509.load_der_x509_csr(der)
    return csr_module._simple_facts(csr.tbs_certrequest_bytes), csr_module._facts_from_objects(csr)


@pytest.mark.parametrize("seed", range(150))
def test_the_reader_agrees_with_cryptography(seed: int) -> None:
    rng = random.Random(seed)
    key_name = rng.choice(list(KEYS))
    names = (
        [random_general_name(rng) for _ in range(rng.randint(1, 5))] if rng.random() < 0.8 else None
    )
    der = build(key_name, random_subject(rng), names, critical=rng.random() < 0.3)
    fast, slow = both_ways(der)
    assert fast is not None, "a plain request should be read from the DER"
    common_name, sans, spki = fast
    assert (common_name, sans, ()) == slow
    public_key = x509.load_der_x509_csr(der).public_key()
    assert spki == public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    info = parse_csr(der)
    assert (info.common_name, info.sans, info.other_names) == slow


@pytest.mark.parametrize(
    ("label", "names", "extra"),
    [
        (
            "otherName SAN",
            [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3"), b"\x04\x00")],
            None,
        ),
        ("directoryName SAN", [x509.DirectoryName(x509.Name([]))], None),
        ("registeredID SAN", [x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))], None),
        (
            "another extension",
            [x509.DNSName("a.example")],
            x509.BasicConstraints(ca=False, path_length=None),
        ),
    ],
)
def test_requests_beyond_the_reader_go_to_cryptography(
    label: str, names: list[x509.GeneralName], extra: x509.ExtensionType | None
) -> None:
    der = build(
        "P-256",
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")]),
        names,
        extra=extra,
    )
    request = x509.load_der_x509_csr(der)
    assert csr_module._simple_facts(request.tbs_certrequest_bytes) is None, label
    try:
        expected = csr_module._facts_from_objects(request)
    except BadRequest as exc:
        with pytest.raises(BadRequest, match=re.escape(exc.detail)):
            parse_csr(der)
        return
    info = parse_csr(der)
    assert (info.common_name, info.sans, info.other_names) == expected


def test_multi_valued_rdns_and_bmp_strings_go_to_cryptography() -> None:
    multi = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "b"),
                ]
            )
        ]
    )
    bmp = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "bmp", _type=x509.name._ASN1Type.BMPString)]
    )
    for subject in (multi, bmp):
        der = build("P-256", subject, [x509.DNSName("a.example")])
        fast, slow = both_ways(der)
        assert fast is None
        info = parse_csr(der)
        assert (info.common_name, info.sans, info.other_names) == slow


def test_a_forged_signature_is_refused_by_the_direct_check() -> None:
    for key_name in KEYS:
        der = bytearray(build(key_name, x509.Name([]), [x509.DNSName("a.example")]))
        der[-3] ^= 0x01  # inside the signature BIT STRING
        with pytest.raises(BadRequest, match=r"signature is invalid|cannot be parsed"):
            parse_csr(bytes(der))


def test_a_signature_algorithm_that_does_not_fit_the_key_is_refused() -> None:
    """An RSA-PSS signed request is checked by cryptography, not the direct path."""
    from cryptography.hazmat.primitives.asymmetric import padding

    key = KEYS["RSA-2048"]
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pss.example")]), False)
        .sign(
            key,
            hashes.SHA256(),
            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        )
    )
    info = parse_csr(request.public_bytes(Encoding.DER))
    assert [str(s) for s in info.sans] == ["pss.example"]
