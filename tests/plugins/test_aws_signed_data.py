"""plugins.signed_data: CMS SignedData as AWS and Azure sign instance documents, built
here with the tests' own keys (asn1crypto), and hostile variants of it.

The builders (:func:`sign_cms`, :func:`key_carrier`) are shared with the AWS
provisioner's tests and property tests.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine import der
from engine.errors import BadRequest, ProtocolError, Unauthorized
from hosts.testing.metadata import AWS_FORMS, AWSMetadataServer, AzureMetadataServer
from plugins import signed_data
from plugins.signed_data import MAX_SIGNED_DATA_BYTES, SignedContent, read_signed_data
from tests.vectors_path import VECTORS

SigningKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey

_HASH = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_SIGNATURE_OID = {
    "rsa": "1.2.840.113549.1.1.1",
    "dsa": "1.2.840.10040.4.1",
    "ecdsa": "1.2.840.10045.2.1",
}
SIGNING_TIME = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def key_carrier(key: SigningKey, name: str = "Test Cloud") -> x509.Certificate:
    """A self-signed certificate carrying *key*'s public key (DSA keys are signed with
    SHA-256, as cryptography allows)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _family(key: SigningKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return "dsa" if isinstance(key, dsa.DSAPrivateKey) else "ecdsa"


def _sign(key: SigningKey, data: bytes, digest: str) -> bytes:
    algorithm = _HASH[digest]()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, dsa.DSAPrivateKey):
        return key.sign(data, algorithm)
    return key.sign(data, ec.ECDSA(algorithm))


def sign_cms(
    content: bytes,
    key: SigningKey,
    certificate: x509.Certificate,
    *,
    digest: str = "sha256",
    digest_oid: str | None = None,
    signature_oid: str | None = None,
    attributes: bool = True,
    message_digest: bytes | None = None,
    content_type: str = "data",
    embed: tuple[x509.Certificate, ...] = (),
    by_key_identifier: bool = False,
    indefinite: bool = False,
) -> bytes:
    """A ContentInfo/SignedData over *content* signed by *key*, the way AWS signs its
    instance identity document (signed attributes contentType, signingTime,
    messageDigest; the signer named by issuer and serial number; no certificates), with
    the variations the keywords ask for. *indefinite* gives the outer SEQUENCEs
    indefinite lengths (BER, as AWS sends)."""
    tbs = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))["tbs_certificate"]
    if by_key_identifier:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        sid = cms.SignerIdentifier({"subject_key_identifier": ski.value.digest})
    else:
        sid = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": tbs["issuer"],
                    "serial_number": tbs["serial_number"],
                }
            }
        )
    digest_algorithm = algos.DigestAlgorithm({"algorithm": digest_oid or digest})
    signer: dict[str, object] = {
        "version": "v1",
        "sid": sid,
        "digest_algorithm": digest_algorithm,
        "signature_algorithm": {"algorithm": signature_oid or _SIGNATURE_OID[_family(key)]},
    }
    if attributes:
        signed = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
                cms.CMSAttribute(
                    {"type": "signing_time", "values": [cms.Time({"utc_time": SIGNING_TIME})]}
                ),
                cms.CMSAttribute(
                    {
                        "type": "message_digest",
                        "values": [message_digest or hashlib.new(digest, content).digest()],
                    }
                ),
            ]
        )
        signer["signed_attrs"] = signed
        signer["signature"] = _sign(key, signed.dump(), digest)
    else:
        signer["signature"] = _sign(key, content, digest)
    signed_data: dict[str, object] = {
        "version": "v1",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": {"content_type": "data", "content": content},
        "signer_infos": [cms.SignerInfo(signer)],
    }
    if embed:
        signed_data["certificates"] = [
            cms.CertificateChoices(
                name="certificate",
                value=asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)),
            )
            for c in embed
        ]
    info = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})
    der: bytes = info.dump()
    return _indefinite(der) if indefinite else der


def _indefinite(der: bytes) -> bytes:
    """*der* with the ContentInfo's and the SignedData's SEQUENCE headers (and the
    [0] EXPLICIT between them) in BER's indefinite-length form."""
    info = cms.ContentInfo.load(der)
    signed_data = info["content"]
    inner = b"\x30\x80" + signed_data.contents + b"\x00\x00"
    explicit = b"\xa0\x80" + inner + b"\x00\x00"
    return b"\x30\x80" + info["content_type"].dump() + explicit + b"\x00\x00"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    return dsa.generate_private_key(key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


DOCUMENT = b'{\n  "accountId" : "123456789012",\n  "region" : "eu-west-1"\n}'


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("attributes", [True, False])
def test_rsa_signatures_verify(rsa_key: rsa.RSAPrivateKey, digest: str, attributes: bool) -> None:
    certificate = key_carrier(rsa_key)
    signed = read_signed_data(
        sign_cms(DOCUMENT, rsa_key, certificate, digest=digest, attributes=attributes)
    )
    assert signed.content == DOCUMENT
    assert signed.digest_algorithm == digest
    assert signed.certificates == ()
    assert signed.signer_certificate() is None
    signed.verify(rsa_key.public_key())


def test_dsa_sha1_as_aws_pkcs7(dsa_key: dsa.DSAPrivateKey) -> None:
    certificate = key_carrier(dsa_key)
    signed = read_signed_data(sign_cms(DOCUMENT, dsa_key, certificate, digest="sha1"))
    signed.verify(dsa_key.public_key())


def test_ecdsa(ec_key: ec.EllipticCurvePrivateKey) -> None:
    certificate = key_carrier(ec_key)
    read_signed_data(sign_cms(DOCUMENT, ec_key, certificate, digest="sha384")).verify(
        ec_key.public_key()
    )


def test_ber_indefinite_lengths_are_read(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), indefinite=True)
    assert der[:2] == b"\x30\x80"
    signed = read_signed_data(der)
    assert signed.content == DOCUMENT
    signed.verify(rsa_key.public_key())


def test_signature_oid_as_digest_algorithm_as_azure_names_it(rsa_key: rsa.RSAPrivateKey) -> None:
    certificate = key_carrier(rsa_key)
    der = sign_cms(
        DOCUMENT,
        rsa_key,
        certificate,
        digest_oid="1.2.840.113549.1.1.11",
        attributes=False,
        embed=(certificate,),
    )
    signed = read_signed_data(der)
    assert signed.digest_algorithm == "sha256"
    assert signed.signer_certificate() == certificate
    signed.verify(rsa_key.public_key())


def test_signer_certificate_by_key_identifier_among_others(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    certificate = key_carrier(rsa_key)
    other = key_carrier(ec_key, "Other")
    der = sign_cms(
        DOCUMENT, rsa_key, certificate, embed=(other, certificate), by_key_identifier=True
    )
    signed = read_signed_data(der)
    assert signed.certificates == (other, certificate)
    assert signed.signer_certificate() == certificate
    by_issuer = read_signed_data(sign_cms(DOCUMENT, rsa_key, certificate, embed=(other,)))
    assert by_issuer.signer_certificate() is None


def test_another_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    signed = read_signed_data(sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized, match="does not verify"):
        signed.verify(other.public_key())
    with pytest.raises(Unauthorized, match="RSA signature cannot be checked"):
        signed.verify(ec_key.public_key())


def test_changed_content_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    for attributes in (True, False):
        der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), attributes=attributes)
        changed = der.replace(b"123456789012", b"123456789013")
        assert changed != der
        signed = read_signed_data(changed)
        with pytest.raises(Unauthorized):
            signed.verify(rsa_key.public_key())


def test_message_digest_must_be_the_contents(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), message_digest=b"\x00" * 32)
    with pytest.raises(Unauthorized, match="messageDigest"):
        read_signed_data(der).verify(rsa_key.public_key())


def test_content_type_attribute_must_be_data(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), content_type="signed_data")
    with pytest.raises(BadRequest, match="contentType"):
        read_signed_data(der)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"digest_oid": "1.2.840.113549.2.5"}, "digest algorithm 1.2.840.113549.2.5"),
        ({"signature_oid": "1.2.840.113549.1.1.10"}, "signature algorithm 1.2.840.113549.1.1.10"),
        ({"signature_oid": "1.2.840.113549.1.1.5"}, "disagree"),
    ],
)
def test_unsupported_algorithms(
    rsa_key: rsa.RSAPrivateKey, keywords: dict[str, str], message: str
) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), **keywords)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=message):
        read_signed_data(der)


def test_not_signed_data_or_no_content(rsa_key: rsa.RSAPrivateKey) -> None:
    data = cms.ContentInfo({"content_type": "data", "content": core.OctetString(b"x")}).dump()
    with pytest.raises(BadRequest, match="not SignedData"):
        read_signed_data(data)
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key))
    info = cms.ContentInfo.load(der)
    info["content"]["encap_content_info"] = {"content_type": "data"}
    with pytest.raises(BadRequest, match="detached"):
        read_signed_data(info.dump(force=True))
    info = cms.ContentInfo.load(der)
    signer = info["content"]["signer_infos"][0]
    info["content"]["signer_infos"] = [signer, signer]
    with pytest.raises(BadRequest, match="2 signers"):
        read_signed_data(info.dump(force=True))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x00", b"junk" * 10, b"\x30\x80", b"\x04\x03abc", b"\x30\x03\x06\x01\x00"],
)
def test_malformed_bytes_are_bad_requests(data: bytes) -> None:
    with pytest.raises(BadRequest):
        read_signed_data(data)


def test_size_is_bounded(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(b"x" * (MAX_SIGNED_DATA_BYTES + 1), rsa_key, key_carrier(rsa_key))
    with pytest.raises(BadRequest, match="larger than"):
        read_signed_data(der)


def test_trailing_bytes_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key))
    with pytest.raises(BadRequest, match="malformed"):
        read_signed_data(der + b"\x00")


def test_every_truncation_is_a_bad_request(rsa_key: rsa.RSAPrivateKey) -> None:
    der = sign_cms(DOCUMENT, rsa_key, key_carrier(rsa_key), embed=(key_carrier(rsa_key),))
    for size in range(len(der)):
        with pytest.raises(BadRequest):
            read_signed_data(der[:size])


def _real_aws_pkcs7() -> tuple[bytes, x509.Certificate]:
    """AWS's real pkcs7 signature (BER, chunked content, DSA/SHA-1) and the certificate
    it verifies with (tests/vectors/cloud/aws/pkcs7_us-east-1.pem)."""
    text = (VECTORS / "cloud" / "aws" / "pkcs7_us-east-1.pem").read_text()
    body = text.split("-----BEGIN PKCS7-----")[1].split("-----END PKCS7-----")[0]
    return base64.b64decode("".join(body.split())), x509.load_pem_x509_certificate(text.encode())


def test_a_real_aws_pkcs7_signature_verifies() -> None:
    der, certificate = _real_aws_pkcs7()
    assert der[:2] == b"\x30\x80"
    signed = read_signed_data(der)
    assert signed.digest_algorithm == "sha1"
    assert signed.certificates == ()
    assert signed.content.startswith(b'{\n  "privateIp" : "172.30.0.252",')
    assert b'"instanceId" : "i-f79fe56c"' in signed.content
    signed.verify(certificate.public_key())  # type: ignore[arg-type]


def test_a_changed_real_aws_pkcs7_signature_fails() -> None:
    der, certificate = _real_aws_pkcs7()
    key = certificate.public_key()
    for position in (der.index(b"t2.micro"), len(der) - 12):
        changed = bytearray(der)
        changed[position] ^= 1
        with pytest.raises((Unauthorized, BadRequest)):
            read_signed_data(bytes(changed)).verify(key)  # type: ignore[arg-type]
    other = dsa.generate_private_key(key_size=1024).public_key()
    with pytest.raises(Unauthorized, match="does not verify"):
        read_signed_data(der).verify(other)


# --- the fast reader and the general one give every input the same answer ---------------

Node = tuple[int, bytes, list["Node"] | None]
Reader = Callable[[bytes], SignedContent]
PublicKey = rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey


def _tree(data: bytes) -> list[Node]:
    """*data* (DER) as nodes: tag, value, and the children of a constructed value that
    reads as DER elements (None otherwise)."""
    nodes: list[Node] = []
    offset = 0
    while offset < len(data):
        tag, value, offset = der.read_tlv(data, offset)
        children: list[Node] | None = None
        if tag & 0x20:
            try:
                children = _tree(value)
            except BadRequest:
                children = None
        nodes.append((tag, value, children))
    return nodes


def _paths(nodes: list[Node], here: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for index, (_, _, children) in enumerate(nodes):
        out.append((*here, index))
        if children is not None:
            out.extend(_paths(children, (*here, index)))
    return out


Edit = Callable[[list[tuple[int, bytes]], int], list[bytes]]


def _encode(
    nodes: list[Node], target: tuple[int, ...], edit: Edit, here: tuple[int, ...] = ()
) -> bytes:
    """*nodes* encoded again, *edit* rewriting the target's siblings (tag and body each);
    every enclosing length follows."""
    items = [
        (tag, value if children is None else _encode(children, target, edit, (*here, index)))
        for index, (tag, value, children) in enumerate(nodes)
    ]
    if target[:-1] == here and target[-1] < len(items):
        return b"".join(edit(items, target[-1]))
    return b"".join(der.tlv(tag, body) for tag, body in items)


def _replacing(replacement: Callable[[int, bytes], list[bytes]]) -> Edit:
    """An edit putting *replacement* (of the target's tag and body) in the target's place."""

    def edit(items: list[tuple[int, bytes]], at: int) -> list[bytes]:
        out: list[bytes] = []
        for position, (tag, body) in enumerate(items):
            out.extend(replacement(tag, body) if position == at else [der.tlv(tag, body)])
        return out

    return edit


def _retagging(tag: int) -> Edit:
    return _replacing(lambda _, body: [der.tlv(tag, body)])


def _swap(items: list[tuple[int, bytes]], at: int) -> list[bytes]:
    encoded = [der.tlv(tag, body) for tag, body in items]
    if at + 1 < len(encoded):
        encoded[at], encoded[at + 1] = encoded[at + 1], encoded[at]
    return encoded


_TAGS = (0x02, 0x04, 0x05, 0x06, 0x24, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xA1, 0xA2, 0xA3, 0x1F)
_ELEMENT_EDITS: tuple[Callable[[int, bytes], list[bytes]], ...] = (
    lambda tag, body: [],
    lambda tag, body: [der.tlv(tag, body)] * 2,
    lambda tag, body: [der.tlv(tag, body), b"\x05\x00"],
    lambda tag, body: [bytes([tag, 0x82]) + len(body).to_bytes(2, "big") + body],
    lambda tag, body: [bytes([tag, 0x80]) + body + b"\x00\x00"],
    lambda tag, body: [der.tlv(0x24, der.tlv(0x04, body[:1]) + der.tlv(0x04, body[1:]))],
    lambda tag, body: [bytes([0x24, 0x80]) + der.tlv(0x04, body) + b"\x00\x00"],
    lambda tag, body: [der.tlv(tag, body + b"\x00")],
    lambda tag, body: [der.tlv(tag, body[:-1])],
    lambda tag, body: [der.tlv(tag, b"")],
    lambda tag, body: [der.tlv(tag, b"\x00" + body)],
    lambda tag, body: [bytes([tag | 0x1F, 0x01]) + der.tlv(0, body)[1:]],
)


def _variants(data: bytes, seed: int, count: int) -> list[bytes]:
    """*count* variants of *data*: each element of a DER *data* retagged, removed,
    doubled, followed by an extra element, swapped with the next, its length long-form or
    indefinite, an OCTET STRING chunked, its value shortened, lengthened or emptied (every
    enclosing length kept right); and bytes changed, inserted, removed or cut anywhere."""
    rng = random.Random(seed)
    out: list[bytes] = []
    try:
        nodes = _tree(data)
    except BadRequest:
        nodes = []
    paths = _paths(nodes)
    edits: list[Edit] = [_swap]
    edits += [_retagging(tag) for tag in _TAGS]
    edits += [_replacing(replacement) for replacement in _ELEMENT_EDITS]
    if paths:
        for _ in range(count * 3 // 4):
            out.append(_encode(nodes, rng.choice(paths), rng.choice(edits)))
    while len(out) < count:
        position = rng.randrange(len(data))
        choice = rng.randrange(4)
        if choice == 0:
            out.append(data[:position] + bytes([rng.randrange(256)]) + data[position + 1 :])
        elif choice == 1:
            out.append(data[:position] + bytes([rng.randrange(256)]) + data[position:])
        elif choice == 2:
            out.append(data[:position] + data[position + 1 :])
        else:
            out.append(data[:position])
    return out


def _answer(reader: Reader, data: bytes, keys: tuple[PublicKey, ...]) -> tuple[object, ...]:
    """All a reader's answer shows: the refusal (type and message), or every part of the
    SignedContent and what verifying it with each of *keys* gives."""
    try:
        signed = reader(data)
    except ProtocolError as exc:
        return ("refused", type(exc).__name__, str(exc))
    verdicts: list[object] = []
    for key in keys:
        try:
            signed.verify(key)
            verdicts.append("verifies")
        except ProtocolError as exc:
            verdicts.append((type(exc).__name__, str(exc)))
    signer = signed.signer_certificate()
    return (
        "read",
        signed.content,
        tuple(c.public_bytes(Encoding.DER) for c in signed.certificates),
        signed.digest_algorithm,
        None if signer is None else signer.public_bytes(Encoding.DER),
        signed._family,
        signed._signature,
        signed._signed_attributes,
        signed._message_digest,
        signed._signer_index,
        tuple(verdicts),
    )


def _fast_or_none(data: bytes) -> SignedContent | None:
    """The fast reader's answer, or None where it leaves the bytes to the general reader
    (nothing else may come out of it)."""
    try:
        return signed_data._fast_read(data)
    except signed_data._NotFast:
        return None


def _assert_same_answers(data: bytes, keys: tuple[PublicKey, ...], *, seed: int, count: int) -> int:
    """Both readers agree on *data* and *count* variants of it (and read_signed_data
    answers as the general reader); how many of them the fast reader read itself."""
    fast = 0
    for sample in [data, *_variants(data, seed, count)]:
        if not sample or len(sample) > MAX_SIGNED_DATA_BYTES:
            continue
        general = _answer(signed_data._read_general, sample, keys)
        assert _answer(read_signed_data, sample, keys) == general, sample.hex()
        if _fast_or_none(sample) is not None:
            fast += 1
            assert _answer(signed_data._fast_read, sample, keys) == general, sample.hex()
    return fast


def _real_azure(name: str) -> tuple[bytes, PublicKey]:
    der_bytes = (VECTORS / "cloud" / "azure" / name).read_bytes()
    signer = read_signed_data(der_bytes).signer_certificate()
    assert signer is not None
    key = signer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return der_bytes, key


@pytest.mark.parametrize("name", ["attested_regular.p7", "attested_govcloud.p7"])
def test_fast_reader_answers_as_the_general_one_for_real_azure_documents(
    name: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    data, key = _real_azure(name)
    assert _fast_or_none(data) is not None
    keys = (key, rsa_key.public_key(), ec_key.public_key())
    assert _assert_same_answers(data, keys, seed=len(data), count=1500) > 0


def test_fast_reader_answers_as_the_general_one_for_the_real_aws_pkcs7(
    dsa_key: dsa.DSAPrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    data, certificate = _real_aws_pkcs7()
    assert _fast_or_none(data) is None  # BER: the general reader's
    key = certificate.public_key()
    assert isinstance(key, dsa.DSAPublicKey)
    _assert_same_answers(data, (key, dsa_key.public_key(), rsa_key.public_key()), seed=7, count=400)


@pytest.mark.parametrize("form", AWS_FORMS)
def test_fast_reader_answers_as_the_general_one_for_the_aws_metadata_server(
    form: str, rsa_key: rsa.RSAPrivateKey, dsa_key: dsa.DSAPrivateKey
) -> None:
    server = AWSMetadataServer()
    data = base64.b64decode(server.sign(form))
    keys = (server.key(form).public_key(), rsa_key.public_key(), dsa_key.public_key())
    fast = _assert_same_answers(data, keys, seed=len(form), count=1500)
    if form != "signature":
        assert _fast_or_none(data) is not None
        assert fast > 0


def test_fast_reader_answers_as_the_general_one_for_the_azure_metadata_server(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server = AzureMetadataServer()
    data = base64.b64decode(server.attested("20261130-080000"))
    assert _fast_or_none(data) is not None
    key = server.signer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    keys = (key, rsa_key.public_key(), ec_key.public_key())
    assert _assert_same_answers(data, keys, seed=3, count=1500) > 0


@pytest.mark.parametrize(
    "keywords",
    [
        {},
        {"attributes": False},
        {"by_key_identifier": True, "embed": "both"},
        {"embed": "other"},
        {"digest": "sha512"},
        {"digest_oid": "1.2.840.113549.1.1.11", "attributes": False, "embed": "signer"},
        {"message_digest": b"\x00" * 32},
        {"content_type": "signed_data"},
        {"signature_oid": "1.2.840.113549.1.1.5"},
        {"indefinite": True},
    ],
)
def test_fast_reader_answers_as_the_general_one_for_built_signed_data(
    keywords: dict[str, Any],
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    dsa_key: dsa.DSAPrivateKey,
) -> None:
    certificate = key_carrier(rsa_key)
    other = key_carrier(ec_key, "Other")
    embed = {"both": (other, certificate), "other": (other,), "signer": (certificate,)}
    if "embed" in keywords:
        keywords = {**keywords, "embed": embed[keywords["embed"]]}
    data = sign_cms(DOCUMENT, rsa_key, certificate, **keywords)
    keys = (rsa_key.public_key(), ec_key.public_key(), dsa_key.public_key())
    _assert_same_answers(data, keys, seed=len(data), count=300)


def test_fast_reader_and_ecdsa_and_dsa_signers(
    ec_key: ec.EllipticCurvePrivateKey, dsa_key: dsa.DSAPrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    for key in (ec_key, dsa_key):
        data = sign_cms(DOCUMENT, key, key_carrier(key), digest="sha256")
        assert _fast_or_none(data) is not None
        keys = (key.public_key(), rsa_key.public_key())
        _assert_same_answers(data, keys, seed=11, count=200)
