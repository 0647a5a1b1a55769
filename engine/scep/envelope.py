"""CMS EnvelopedData for SCEP: RSA key transport (PKCS#1 v1.5 or OAEP) of an AES-CBC or
3DES-CBC content key (RFC 8894 section 3.1, RFC 5652 section 6)."""

from __future__ import annotations

import functools
import hmac
from typing import Any

import attrs
from asn1crypto import cms, core, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from ..ports import Random
from .structures import DIGEST_NAMES, algorithm_name, load_strict, parsing
from .types import ContentEncryption, FailInfo, SCEPFailure


@attrs.frozen
class _Cipher:
    oid: str
    name: str
    key_size: int
    block_size: int


_CIPHERS = {
    ContentEncryption.AES128_CBC: _Cipher("2.16.840.1.101.3.4.1.2", "aes128-cbc", 16, 16),
    ContentEncryption.AES256_CBC: _Cipher("2.16.840.1.101.3.4.1.42", "aes256-cbc", 32, 16),
    ContentEncryption.DES3_CBC: _Cipher("1.2.840.113549.3.7", "des-ede3-cbc", 24, 8),
    ContentEncryption.DES_CBC: _Cipher("1.3.14.3.2.7", "des-cbc", 8, 8),
}
_BY_OID = {cipher.oid: kind for kind, cipher in _CIPHERS.items()}
_RSAES_PKCS1V15 = "1.2.840.113549.1.1.1"
_RSAES_OAEP = "1.2.840.113549.1.1.7"
_MGF1 = "1.2.840.113549.1.1.8"
_OAEP_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}
KEY_TRANSPORTS = ("pkcs1v15", "oaep", "oaep-sha1")
# Why any content whose key has been unwrapped is refused, whatever step failed.
UNDECRYPTABLE = "the content cannot be decrypted"


def _fail(info: FailInfo, text: str) -> SCEPFailure:
    return SCEPFailure(info, text)


class _EncryptedContentInfo(core.Sequence):  # type: ignore[misc]
    """EncryptedContentInfo with encryptedContent left unread: see :func:`_ciphertext`."""

    _fields = [
        ("content_type", cms.ContentType),
        ("content_encryption_algorithm", cms.EncryptionAlgorithm),
        ("encrypted_content", core.Any, {"optional": True}),
    ]


def _ciphertext(content_info: Any) -> bytes | None:
    """encryptedContent ([0] IMPLICIT OCTET STRING), None when absent.

    CMS is BER (RFC 5652 section 6.1): the string may come constructed, as a run of
    primitive OCTET STRING chunks, and Go's pkcs7 package (behind micromdm's scepclient)
    always sends it so. asn1crypto reads a constructed string only with an indefinite
    length, so the element is split here with asn1crypto's parser and each chunk loaded
    as an OCTET STRING.
    """
    rest = bytes(content_info.contents)
    for _ in range(2):  # contentType, contentEncryptionAlgorithm
        rest = rest[parser.peek(rest) :]
    if not rest:
        return None
    class_, method, tag, _header, contents, _trailer = parser.parse(rest, strict=True)
    if class_ != 2 or tag != 0:  # context-specific [0]
        raise ValueError("encryptedContent is not tagged [0]")
    if method == 0:  # primitive
        return bytes(contents)
    chunks: list[bytes] = []
    while contents:
        size = parser.peek(contents)
        chunk = core.OctetString.load(contents[:size], strict=True).native
        if not isinstance(chunk, bytes):
            raise ValueError("an encryptedContent chunk is not an OCTET STRING")
        chunks.append(chunk)
        contents = contents[size:]
    return b"".join(chunks)


def _algorithm(content: ContentEncryption, key: bytes) -> Any:
    if content is ContentEncryption.DES3_CBC:
        return TripleDES(key)
    if content is ContentEncryption.DES_CBC:
        return TripleDES(key * 3)  # three equal keys: single DES
    return algorithms.AES(key)


def decrypt_envelope(
    enveloped: bytes,
    recipient: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    allowed: frozenset[ContentEncryption],
) -> bytes:
    """The plaintext of an EnvelopedData addressed to *recipient* (whose private key is
    *key*), if its content encryption is one of *allowed*."""
    return open_envelope(enveloped, recipient, key, allowed=allowed)[0]


def open_envelope(
    enveloped: bytes,
    recipient: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    allowed: frozenset[ContentEncryption],
) -> tuple[bytes, ContentEncryption]:
    """:func:`decrypt_envelope`, and the content encryption the sender used (a server
    answers in it)."""
    envelope = load_strict(cms.ContentInfo, enveloped, "EnvelopedData")

    def read() -> tuple[Any, Any]:
        if envelope["content_type"].dotted != "1.2.840.113549.1.7.3":
            raise ValueError("not an EnvelopedData")
        data = envelope["content"]
        ours = _recipient_identity(recipient)
        found = None
        for info in data["recipient_infos"]:
            if info.name != "ktri":
                continue
            if ours.named_by(info.chosen["rid"]):
                found = info.chosen
                break
        return found, _EncryptedContentInfo.load(data["encrypted_content_info"].dump())

    ktri, content_info = parsing("EnvelopedData", read, fail=_fail)
    if ktri is None:
        raise SCEPFailure(
            FailInfo.BAD_MESSAGE_CHECK,
            "EnvelopedData has no key transport recipient for our certificate",
        )

    def read_content() -> tuple[str, Any, bytes | None, bytes]:
        if content_info["content_type"].dotted != "1.2.840.113549.1.7.1":
            raise ValueError("encrypted content is not id-data")
        algorithm = content_info["content_encryption_algorithm"]
        return (
            algorithm["algorithm"].dotted,
            algorithm["parameters"],
            _ciphertext(content_info),
            ktri["encrypted_key"].native,
        )

    oid, parameters, ciphertext, encrypted_key = parsing("EnvelopedData", read_content, fail=_fail)
    kind = _BY_OID.get(oid)
    if kind is None or kind not in allowed:
        name = _CIPHERS[kind].name if kind is not None else algorithm_name(oid)
        raise SCEPFailure(FailInfo.BAD_ALG, f"content encryption {name} is not allowed")
    cipher = _CIPHERS[kind]
    if not isinstance(parameters, core.OctetString):
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"{cipher.name} parameters must be an IV")
    iv = parsing("EnvelopedData IV", lambda: parameters.native, fail=_fail)
    if not isinstance(iv, bytes) or len(iv) != cipher.block_size:
        raise SCEPFailure(
            FailInfo.BAD_REQUEST, f"{cipher.name} IV must be {cipher.block_size} bytes"
        )
    if ciphertext is None:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "EnvelopedData has no encrypted content")
    key_padding = _key_transport(ktri)
    # From here on every failure depends on the decrypted content key, and each one is
    # refused alike (one failInfo, one text), the content decrypted either way, so that a
    # client cannot tell which step failed: no padding or key-unwrapping oracle.
    try:
        content_key = key.decrypt(encrypted_key, key_padding)
    except ValueError:
        content_key = b""
    usable = len(content_key) == cipher.key_size
    if not usable:
        content_key = bytes(cipher.key_size)  # decrypt anyway, with a key no one chose
    if not ciphertext or len(ciphertext) % cipher.block_size:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, UNDECRYPTABLE)
    decryptor = Cipher(_algorithm(kind, content_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(cipher.block_size * 8).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        usable = False
    if not usable:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, UNDECRYPTABLE)
    return plaintext, kind


@attrs.frozen
class _Identity:
    """What a RecipientIdentifier can name a certificate by, read once per certificate."""

    certificate: x509.Certificate
    issuer: bytes  # the issuer Name's DER
    serial: int

    def named_by(self, rid: Any) -> bool:
        """Whether the (asn1crypto) RecipientIdentifier *rid* names this certificate, as
        :func:`identifies` decides."""
        if rid.name == "issuer_and_serial_number":
            value = rid.chosen
            if value["serial_number"].native != self.serial:
                return False
            issuer = value["issuer"]
            return bool(issuer.dump() == self.issuer or issuer == asn1_x509.Name.load(self.issuer))
        if rid.name == "subject_key_identifier":
            identifier = _key_identifier(self.certificate)
            return identifier is not None and hmac.compare_digest(identifier, rid.chosen.native)
        return False


@functools.lru_cache(maxsize=16)
def _recipient_identity(certificate: x509.Certificate) -> _Identity:
    ours = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    tbs = ours["tbs_certificate"]
    return _Identity(
        certificate=certificate,
        issuer=bytes(tbs["issuer"].dump()),
        serial=tbs["serial_number"].native,
    )


@functools.lru_cache(maxsize=16)
def _key_identifier(certificate: x509.Certificate) -> bytes | None:
    identifier = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER)).key_identifier
    return None if identifier is None else bytes(identifier)


def identifies(rid: Any, certificate: Any) -> bool:
    """Whether a RecipientIdentifier or SignerIdentifier names *certificate* (asn1crypto)."""
    if rid.name == "issuer_and_serial_number":
        value = rid.chosen
        tbs = certificate["tbs_certificate"]
        if value["serial_number"].native != tbs["serial_number"].native:
            return False
        issuer = value["issuer"]
        return bool(issuer.dump() == tbs["issuer"].dump() or issuer == tbs["issuer"])
    if rid.name == "subject_key_identifier":
        identifier = certificate.key_identifier
        return identifier is not None and hmac.compare_digest(identifier, rid.chosen.native)
    return False


def _key_transport(ktri: Any) -> asym_padding.AsymmetricPadding:
    """The padding of a KeyTransRecipientInfo's key encryption algorithm."""

    def read() -> asym_padding.AsymmetricPadding:
        algorithm = ktri["key_encryption_algorithm"]
        oid = algorithm["algorithm"].dotted
        if oid == _RSAES_PKCS1V15:
            return asym_padding.PKCS1v15()
        if oid != _RSAES_OAEP:
            raise SCEPFailure(
                FailInfo.BAD_ALG, f"key transport {algorithm_name(oid)} is not supported"
            )
        params = algorithm["parameters"]
        hash_oid = params["hash_algorithm"]["algorithm"].dotted
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].dotted != _MGF1:
            raise SCEPFailure(FailInfo.BAD_ALG, "RSAES-OAEP mask generation must be MGF1")
        mgf_hash_oid = mgf["parameters"]["algorithm"].dotted
        label = params["p_source_algorithm"]["parameters"].native
        hash_name = DIGEST_NAMES.get(hash_oid)
        mgf_hash_name = DIGEST_NAMES.get(mgf_hash_oid)
        if hash_name not in _OAEP_HASHES or mgf_hash_name not in _OAEP_HASHES:
            raise SCEPFailure(FailInfo.BAD_ALG, "RSAES-OAEP hashes must be SHA-1 or SHA-256")
        if label:
            raise SCEPFailure(FailInfo.BAD_ALG, "RSAES-OAEP with a label is not supported")
        return asym_padding.OAEP(
            mgf=asym_padding.MGF1(_OAEP_HASHES[mgf_hash_name]()),
            algorithm=_OAEP_HASHES[hash_name](),
            label=None,
        )

    return parsing("key transport algorithm", read, fail=_fail)


def envelope(
    content: bytes,
    recipient: x509.Certificate,
    *,
    random: Random,
    encryption: ContentEncryption = ContentEncryption.AES256_CBC,
    key_transport: str = "pkcs1v15",
) -> bytes:
    """EnvelopedData (as a ContentInfo) of *content* for *recipient*'s RSA key; the content
    key and IV come from *random*. *key_transport*: "pkcs1v15", "oaep" (SHA-256) or "oaep-sha1"."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("SCEP key transport needs an RSA recipient certificate")
    if key_transport not in KEY_TRANSPORTS:
        raise ValueError(f"key transport must be one of {', '.join(KEY_TRANSPORTS)}")
    cipher = _CIPHERS[encryption]
    content_key = random.bytes(cipher.key_size)
    iv = random.bytes(cipher.block_size)
    padder = padding.PKCS7(cipher.block_size * 8).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(_algorithm(encryption, content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    transport: asym_padding.AsymmetricPadding
    if key_transport == "pkcs1v15":
        transport = asym_padding.PKCS1v15()
    else:
        name = "sha256" if key_transport == "oaep" else "sha1"
        transport = asym_padding.OAEP(
            mgf=asym_padding.MGF1(_OAEP_HASHES[name]()), algorithm=_OAEP_HASHES[name](), label=None
        )
    # Assembled from the DER of its parts, each encoded by asn1crypto: filling the
    # structures from dicts costs more than the RSA encryption.
    tbs = asn1_x509.Certificate.load(recipient.public_bytes(Encoding.DER))["tbs_certificate"]
    rid = cms.IssuerAndSerialNumber(
        contents=bytes(tbs["issuer"].dump()) + bytes(tbs["serial_number"].dump())
    )
    ktri = cms.KeyTransRecipientInfo(
        contents=b"".join(
            (
                _VERSION_0,
                bytes(rid.dump()),
                _key_encryption_algorithm(key_transport),
                bytes(core.OctetString(public_key.encrypt(content_key, transport)).dump()),
            )
        )
    )
    content_algorithm = cms.EncryptionAlgorithm(
        contents=_oid(cipher.oid) + bytes(core.OctetString(iv).dump())
    )
    encrypted = cms.EncryptedContentInfo(
        contents=b"".join(
            (
                _DATA,
                bytes(content_algorithm.dump()),
                bytes(core.OctetString(ciphertext, implicit=0).dump()),
            )
        )
    )
    data = cms.EnvelopedData(
        contents=b"".join(
            (
                _VERSION_0,
                bytes(cms.RecipientInfos(contents=bytes(ktri.dump())).dump()),
                bytes(encrypted.dump()),
            )
        ),
        explicit=0,
    )
    return bytes(cms.ContentInfo(contents=_ENVELOPED_DATA + bytes(data.dump())).dump())


_VERSION_0 = bytes(cms.CMSVersion("v0").dump())


@functools.cache
def _oid(oid: str) -> bytes:
    return bytes(core.ObjectIdentifier(oid).dump())


_DATA = bytes(cms.ContentType("data").dump())
_ENVELOPED_DATA = bytes(cms.ContentType("enveloped_data").dump())


@functools.cache
def _key_encryption_algorithm(key_transport: str) -> bytes:
    """The DER KeyEncryptionAlgorithm of a key transport of :data:`KEY_TRANSPORTS`."""
    if key_transport == "pkcs1v15":
        algorithm: dict[str, Any] = {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}
    else:
        name = "sha256" if key_transport == "oaep" else "sha1"
        algorithm = {
            "algorithm": "rsaes_oaep",
            "parameters": {
                "hash_algorithm": {"algorithm": name},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": name}},
            },
        }
    return bytes(cms.KeyEncryptionAlgorithm(algorithm).dump())
