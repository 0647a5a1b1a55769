"""The ``tpm`` device-attest-01 format: real Windows Hello captures and a software TPM stand-in.

software TPM stand-in: the AK, the certified key and the TPM2_Certify output are
built here with software keys and engine.tpm's own marshalling; the real TPM
exchange is covered by the agent tests.

The WebAuthn vectors in tests/vectors/webauthn-tpm (README.md there) are real
Windows Hello statements chained to the Microsoft TPM Root CA 2014; they bind
``extraData`` = H_alg(authData || clientDataHash) instead of device-attest-01's
SHA-256(key authorization), so they go through the same internal verifier with
the README's expected extraData. All of them sign with RS1 (SHA-1).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier

from engine import der
from engine.acme.problems import ACMEProblem
from engine.attestation import TCG_KP_AIK_CERTIFICATE, TPMInfo
from engine.attestation.akcert import permanent_identifier_name
from engine.tpm import (
    CertifyInfo,
    ClockInfo,
    ECCParms,
    ECCSignature,
    ObjectAttributes,
    PCRSelectionList,
    QuoteInfo,
    RSAParms,
    RSASignature,
    Scheme,
    TPMAlg,
    TPMEccCurve,
    TPMSAttest,
    TPMTPublic,
    TPMTSignature,
    ecc_point_of,
)
from plugins.attestation import COSE_ALGORITHMS, guarded
from plugins.attestation.base import AttestationContext, AttestationResult
from plugins.attestation.tpm import (
    TPMFormat,
    check_certification,
    key_authorization_digest,
    verify_tpm_statement,
)
from tests.vectors_path import VECTORS

WEBAUTHN = VECTORS / "webauthn-tpm"
MICROSOFT_ROOT = x509.load_pem_x509_certificate(
    (VECTORS / "roots" / "microsoft-tpm-root-ca-2014.pem").read_bytes()
)
PINNED = datetime(2023, 6, 1, tzinfo=UTC)  # README: inside every chain's validity window
EXPECTED = {
    vector["file"].split(" ")[0].removesuffix(".json"): vector
    for vector in json.loads((WEBAUTHN / "expected_results.json").read_text())["vectors"]
}

KEY_AUTHORIZATION = (
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)
NOW = datetime(2025, 6, 1, tzinfo=UTC)
SIGNING_KEY_ATTRIBUTES = (
    ObjectAttributes.FIXED_TPM
    | ObjectAttributes.FIXED_PARENT
    | ObjectAttributes.SENSITIVE_DATA_ORIGIN
    | ObjectAttributes.USER_WITH_AUTH
    | ObjectAttributes.SIGN
)
HW_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
TPM_INFO = TPMInfo("id:53544D20", "SW   TPM", "id:00010002")


def _problem(run: Callable[[], object]) -> str:
    with pytest.raises(ACMEProblem) as info:
        run()
    assert info.value.problem == "badAttestationStatement"
    return info.value.detail


# --- the WebAuthn vectors -------------------------------------------------------------


def _b64(text: str) -> bytes:
    """Both alphabets, with or without padding (the README: decoders must accept both)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen
class Vector:
    name: str
    statement: dict[str, Any]
    auth_data: bytes
    client_data_hash: bytes
    expected: dict[str, Any]


def _load_vectors() -> dict[str, Vector]:
    out: dict[str, Vector] = {}

    def add(name: str, statement: dict[str, Any], auth_data: bytes, cdh: bytes) -> None:
        out[name] = Vector(name, statement, auth_data, cdh, EXPECTED[name])

    for path in sorted((WEBAUTHN / "py_webauthn").glob("*.json")):
        response = json.loads(path.read_text())["credential"]["response"]
        attestation = cbor2.loads(_b64(response["attestationObject"]))
        assert attestation["fmt"] == "tpm"
        cdh = hashlib.sha256(_b64(response["clientDataJSON"])).digest()
        add(f"py_webauthn/{path.stem}", attestation["attStmt"], attestation["authData"], cdh)
    fido2 = json.loads(
        (WEBAUTHN / "python-fido2" / "tpm_windows_hello_attestation.json").read_text()
    )
    raw = fido2["attStmt"]
    statement = {
        "ver": raw["ver"],
        "alg": raw["alg"],
        "sig": bytes.fromhex(raw["sig"]),
        "x5c": [bytes.fromhex(c) for c in raw["x5c"]],
        "certInfo": bytes.fromhex(raw["certInfo"]),
        "pubArea": bytes.fromhex(raw["pubArea"]),
    }
    add(
        "python-fido2/tpm_windows_hello_attestation",
        statement,
        bytes.fromhex(fido2["authData"]),
        bytes.fromhex(fido2["clientDataHash"]),
    )
    for variant in ("SHA256", "SHA1"):
        folder = WEBAUTHN / "fido2-net-lib"
        response = json.loads((folder / f"attestationTPM{variant}Response.json").read_text())
        attestation = cbor2.loads(_b64(response["response"]["attestationObject"]))
        cdh = hashlib.sha256(_b64(response["response"]["clientDataJSON"])).digest()
        add(
            f"fido2-net-lib/attestationTPM{variant}Response",
            attestation["attStmt"],
            attestation["authData"],
            cdh,
        )
    return out


VECTOR_SET = _load_vectors()
WINDOWS = [name for name in VECTOR_SET if not name.startswith("fido2-net-lib")]
FAKE_ROOT = [name for name in VECTOR_SET if name.startswith("fido2-net-lib")]


def _credential_key(auth_data: bytes) -> Any:
    """The COSE credential public key in authData's attested credential data."""
    length = int.from_bytes(auth_data[53:55], "big")
    cose = cbor2.CBORDecoder(io.BytesIO(auth_data[55 + length :])).decode()
    if cose[1] == 3:  # RSA
        n, e = (int.from_bytes(cose[k], "big") for k in (-1, -2))
        return rsa.RSAPublicNumbers(e, n).public_key()
    assert cose[1] == 2 and cose[-1] == 1  # EC2 P-256
    return ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + cose[-2] + cose[-3]
    )


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _verify_webauthn(
    vector: Vector,
    *,
    allow_sha1: bool,
    roots: tuple[x509.Certificate, ...] = (MICROSOFT_ROOT,),
    now: datetime = PINNED,
) -> AttestationResult:
    extra = bytes.fromhex(vector.expected["expected_extraData_hex"])
    context = AttestationContext(now=now, roots=roots, allow_sha1=allow_sha1)
    return guarded("tpm", lambda: verify_tpm_statement(vector.statement, extra, context))


def test_all_seven_vectors_are_loaded() -> None:
    assert len(WINDOWS) == 5 and len(FAKE_ROOT) == 2
    assert set(VECTOR_SET) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(VECTOR_SET))
def test_the_readme_extra_data_is_the_hash_of_att_to_be_signed(name: str) -> None:
    vector = VECTOR_SET[name]
    assert vector.client_data_hash.hex() == vector.expected["clientDataHash_hex"]
    assert vector.statement["alg"] == vector.expected["attStmt_alg"]
    hash_name = "sha1" if vector.statement["alg"] == -65535 else "sha256"
    to_be_signed = vector.auth_data + vector.client_data_hash
    assert (
        hashlib.new(hash_name, to_be_signed).hexdigest()
        == vector.expected["expected_extraData_hex"]
    )


@pytest.mark.parametrize("name", WINDOWS)
def test_windows_hello_captures_verify_with_sha1_allowed(name: str) -> None:
    vector = VECTOR_SET[name]
    result = _verify_webauthn(vector, allow_sha1=True)

    assert result.format == "tpm"
    assert _spki(result.public_key) == _spki(_credential_key(vector.auth_data))
    assert result.chain[-1] == MICROSOFT_ROOT
    assert result.chain[0].public_bytes(Encoding.DER) == vector.statement["x5c"][0]
    # Windows AIK certificates bind no device identity: nothing to match an identifier to.
    assert result.identities() == frozenset()
    evidence = result.evidence
    assert evidence["alg"] == "RS1"
    assert evidence["signature_encoding"] == "raw"  # README: not a TPMT_SIGNATURE
    assert evidence["certified_key_attributes"] == vector.expected["pubArea_objectAttributes"]
    assert evidence["ak_chain"][0] == ""  # the AIK certificate's subject is empty
    assert evidence["ak_chain"][-1].startswith("CN=Microsoft TPM Root Certificate Authority 2014")
    rdns = vector.expected["aik_san_directoryName_rdns"]
    attributes = {oid: value for rdn in rdns for oid, value in rdn}
    assert evidence["tpm"] == {
        "manufacturer": attributes["2.23.133.2.1"],
        "model": attributes["2.23.133.2.2"],
        "version": attributes["2.23.133.2.3"],
    }
    json.dumps(evidence)


@pytest.mark.parametrize("name", WINDOWS)
def test_windows_hello_captures_are_refused_while_sha1_is_refused(name: str) -> None:
    detail = _problem(lambda: _verify_webauthn(VECTOR_SET[name], allow_sha1=False))
    assert "SHA-1" in detail and "-65535" in detail


@pytest.mark.parametrize("name", WINDOWS)
def test_windows_hello_captures_fail_outside_their_chain_validity(name: str) -> None:
    detail = _problem(
        lambda: _verify_webauthn(
            VECTOR_SET[name], allow_sha1=True, now=datetime(2040, 1, 1, tzinfo=UTC)
        )
    )
    assert "expired" in detail


@pytest.mark.parametrize("name", WINDOWS)
def test_a_webauthn_statement_is_not_a_device_attest_01_answer(name: str) -> None:
    context = AttestationContext(now=PINNED, roots=(MICROSOFT_ROOT,), allow_sha1=True)
    detail = _problem(
        lambda: TPMFormat().verify(VECTOR_SET[name].statement, KEY_AUTHORIZATION, context)
    )
    assert "extraData" in detail


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("name", FAKE_ROOT)
def test_fido_conformance_statements_do_not_chain_to_the_microsoft_root(name: str) -> None:
    detail = _problem(lambda: _verify_webauthn(VECTOR_SET[name], allow_sha1=True))
    assert detail == "the AK certificate does not chain to a trusted root"


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("name", FAKE_ROOT)
def test_fido_conformance_statements_are_valid_apart_from_their_root(name: str) -> None:
    """The README gives no fake root; the TPM part verifies with the AIK certificate's key,
    and pinning x5c[1] as the anchor stops at the AIK certificate's extensions, which
    `cryptography` cannot parse (a UserNotice in certificatePolicies): refused, fail closed."""
    vector = VECTOR_SET[name]
    ak = x509.load_der_x509_certificate(vector.statement["x5c"][0])
    ak_key = ak.public_key()
    assert isinstance(ak_key, rsa.RSAPublicKey)
    certified = check_certification(
        ak_key,
        COSE_ALGORITHMS[vector.statement["alg"]],
        vector.statement["sig"],
        vector.statement["certInfo"],
        vector.statement["pubArea"],
        bytes.fromhex(vector.expected["expected_extraData_hex"]),
        allow_sha1=True,
    )
    assert certified.signature_encoding == "raw"
    assert _spki(certified.key) == _spki(_credential_key(vector.auth_data))

    intermediate = x509.load_der_x509_certificate(vector.statement["x5c"][1])
    detail = _problem(lambda: _verify_webauthn(vector, allow_sha1=True, roots=(intermediate,)))
    assert "extensions cannot be parsed" in detail


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_the_sha256_fido_conformance_statement_needs_no_sha1() -> None:
    vector = VECTOR_SET["fido2-net-lib/attestationTPMSHA256Response"]
    # Refused for its root, not for its algorithm.
    detail = _problem(lambda: _verify_webauthn(vector, allow_sha1=False))
    assert detail == "the AK certificate does not chain to a trusted root"


# --- a software TPM stand-in ---------------------------------------------------------


@attrs.frozen
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _root(common_name: str = "Test AK Root") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


ROOT = _root()
OTHER_ROOT = _root("Another Root")
AK_RSA = rsa.generate_private_key(65537, 2048)
AK_EC = ec.generate_private_key(ec.SECP256R1())
CERTIFIED = ec.generate_private_key(ec.SECP256R1())
EK_DIGEST = hashlib.sha256(b"the EK's SPKI").digest()


def hw_module_name(serial: bytes, hw_type: str = "1.3.6.1.4.1.99999.1") -> x509.OtherName:
    return x509.OtherName(
        HW_MODULE_NAME, der.sequence(der.object_identifier(hw_type), der.tlv(0x04, serial))
    )


DEFAULT_SAN: list[x509.GeneralName] = [
    x509.UniformResourceIdentifier("urn:ek:sha256:" + base64.b64encode(EK_DIGEST).decode()),
    TPM_INFO.directory_name(),  # type: ignore[list-item]
    permanent_identifier_name("device-1234"),
    hw_module_name(b"SN-0042"),
]


def ak_certificate(
    ak_public: Any,
    *,
    issuer: Authority = ROOT,
    san: Sequence[x509.GeneralName] | None = DEFAULT_SAN,
    raw_san: bytes | None = None,
    eku: Sequence[ObjectIdentifier] | None = (TCG_KP_AIK_CERTIFICATE,),
    raw_eku: bytes | None = None,
    ca: bool = False,
    digital_signature: bool = True,
    not_after: datetime = NOW + timedelta(days=30),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.cert.subject)
        .public_key(ak_public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, ca, False, False, False),
            critical=True,
        )
    )
    if raw_san is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, raw_san),
            critical=True,
        )
    elif san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=True)
    if raw_eku is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, raw_eku), critical=False
        )
    elif eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def certified_public_area(
    key: ec.EllipticCurvePrivateKey = CERTIFIED,
    attributes: ObjectAttributes = SIGNING_KEY_ATTRIBUTES,
    name_alg: TPMAlg = TPMAlg.SHA256,
) -> TPMTPublic:
    return TPMTPublic(
        name_alg=name_alg,
        object_attributes=attributes,
        auth_policy=b"",
        parameters=ECCParms(
            scheme=Scheme(TPMAlg.ECDSA, TPMAlg.SHA256), curve=TPMEccCurve.NIST_P256
        ),
        unique=ecc_point_of(key.public_key()),
    )


def tpm_sign(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    data: bytes,
    *,
    hash_alg: TPMAlg = TPMAlg.SHA256,
    encoding: str = "tpmt",
    pss: bool = False,
) -> bytes:
    chosen = {TPMAlg.SHA1: hashes.SHA1(), TPMAlg.SHA256: hashes.SHA256()}[hash_alg]
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(chosen), padding.PSS.DIGEST_LENGTH)
            if pss
            else padding.PKCS1v15()
        )
        raw = key.sign(data, pad, chosen)
        if encoding == "raw":
            return raw
        scheme = TPMAlg.RSAPSS if pss else TPMAlg.RSASSA
        return TPMTSignature(scheme, hash_alg, RSASignature(raw)).to_bytes()
    raw = key.sign(data, ec.ECDSA(chosen))
    if encoding == "raw":
        return raw
    r, s = decode_dss_signature(raw)
    body = ECCSignature(r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    return TPMTSignature(TPMAlg.ECDSA, hash_alg, body).to_bytes()


def statement(
    *,
    ak: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = AK_RSA,
    alg: int | None = None,
    encoding: str = "tpmt",
    hash_alg: TPMAlg = TPMAlg.SHA256,
    pss: bool = False,
    extra_data: bytes | None = None,
    public: TPMTPublic | None = None,
    attested_name: bytes | None = None,
    attested: Any = None,
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    certificate: x509.Certificate | None = None,
    chain: list[x509.Certificate] | None = None,
) -> dict[str, Any]:
    public = public or certified_public_area()
    if alg is None:
        if isinstance(ak, ec.EllipticCurvePrivateKey):
            alg = -7
        else:
            alg = -37 if pss else (-65535 if hash_alg == TPMAlg.SHA1 else -257)
    attest = TPMSAttest(
        qualified_signer=b"\x00\x0b" + b"\x11" * 32,
        extra_data=key_authorization_digest(KEY_AUTHORIZATION)
        if extra_data is None
        else extra_data,
        clock_info=ClockInfo(123456, 7, 0, True),
        firmware_version=0x0001000200030004,
        attested=attested
        or CertifyInfo(attested_name or public.name(), b"\x00\x0b" + b"\x22" * 32),
    )
    cert_info = attest.to_bytes()
    certificate = certificate or ak_certificate(ak.public_key())
    return {
        "ver": "2.0",
        "alg": alg,
        "x5c": [c.public_bytes(Encoding.DER) for c in [certificate, *(chain or [])]],
        "sig": tpm_sign(signer or ak, cert_info, hash_alg=hash_alg, encoding=encoding, pss=pss),
        "certInfo": cert_info,
        "pubArea": public.to_bytes(),
    }


def verify(
    st: Any,
    *,
    roots: tuple[x509.Certificate, ...] = (ROOT.cert,),
    intermediates: tuple[x509.Certificate, ...] = (),
    allow_sha1: bool = False,
    key_authorization: str = KEY_AUTHORIZATION,
    now: datetime = NOW,
) -> AttestationResult:
    context = AttestationContext(
        now=now, roots=roots, intermediates=intermediates, allow_sha1=allow_sha1
    )
    return TPMFormat().verify(st, key_authorization, context)


def test_a_device_attest_01_statement_binds_the_key_and_the_ak_certificate_identities() -> None:
    result = verify(statement())

    assert result.format == "tpm"
    assert _spki(result.public_key) == _spki(CERTIFIED.public_key())
    assert result.permanent_identifiers == ("device-1234",)
    assert result.ek_urns == ("urn:ek:sha256:" + base64.b64encode(EK_DIGEST).decode(),)
    assert result.serial_numbers == (b"SN-0042".hex(), "SN-0042")
    assert result.chain[-1] == ROOT.cert
    evidence = result.evidence
    assert evidence["format"] == "tpm"
    assert (
        evidence["ak_certificate_sha256"]
        == hashlib.sha256(result.chain[0].public_bytes(Encoding.DER)).hexdigest()
    )
    assert evidence["ak_chain"] == ["", "CN=Test AK Root"]
    assert evidence["certified_key_name"] == certified_public_area().name().hex()
    assert evidence["signature_encoding"] == "TPMT_SIGNATURE"
    assert evidence["identities"]["permanent_identifiers"] == ["device-1234"]
    assert evidence["tpm"] == {
        "manufacturer": "id:53544D20",
        "model": "SW   TPM",
        "version": "id:00010002",
    }
    json.dumps(evidence)


@pytest.mark.parametrize(
    ("ak", "encoding", "pss"),
    [
        (AK_RSA, "tpmt", False),
        (AK_RSA, "raw", False),
        (AK_RSA, "tpmt", True),
        (AK_RSA, "raw", True),
        (AK_EC, "tpmt", False),
        (AK_EC, "raw", False),
    ],
    ids=["RSASSA TPMT", "RSASSA raw", "RSAPSS TPMT", "RSAPSS raw", "ECDSA TPMT", "ECDSA DER"],
)
def test_sig_may_be_a_tpmt_signature_or_a_raw_signature(ak: Any, encoding: str, pss: bool) -> None:
    result = verify(statement(ak=ak, encoding=encoding, pss=pss))
    assert result.evidence["signature_encoding"] == (
        "TPMT_SIGNATURE" if encoding == "tpmt" else "raw"
    )


def test_an_ak_certificate_without_identities_gives_no_identities() -> None:
    """The AK certificate is valid but names no device: the result carries no identity,
    so the ACME server refuses every identifier (step-ca accepts any)."""
    result = verify(statement(certificate=ak_certificate(AK_RSA.public_key(), san=None)))
    assert result.identities() == frozenset()
    assert _spki(result.public_key) == _spki(CERTIFIED.public_key())


def test_sha1_is_refused_unless_allowed() -> None:
    st = statement(hash_alg=TPMAlg.SHA1)
    assert st["alg"] == -65535
    assert "SHA-1" in _problem(lambda: verify(st))
    assert verify(st, allow_sha1=True).evidence["alg"] == "RS1"


def test_a_sha1_name_alg_is_refused_unless_allowed() -> None:
    st = statement(public=certified_public_area(name_alg=TPMAlg.SHA1))
    assert "nameAlg is SHA-1" in _problem(lambda: verify(st))
    assert verify(st, allow_sha1=True)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: statement(extra_data=b"\x00" * 32), "extraData"),
        (
            lambda: statement(extra_data=hashlib.sha1(KEY_AUTHORIZATION.encode()).digest()),
            "extraData",
        ),
        (lambda: statement(attested_name=b"\x00\x0b" + b"\x00" * 32), "attested.name"),
        (
            lambda: statement(
                attested_name=certified_public_area(ec.generate_private_key(ec.SECP256R1())).name()
            ),
            "attested.name",
        ),
        (lambda: statement(signer=rsa.generate_private_key(65537, 2048)), "not a valid signature"),
        (lambda: statement(alg=-7), "RSA key"),
        (lambda: statement(ak=AK_EC, alg=-257), "ECC key"),
        (lambda: statement(alg=-258), "TPMT_SIGNATURE for RSASSA/SHA256"),
        (lambda: statement(alg=-8), "not a supported signature algorithm"),
        (
            lambda: statement(attested=QuoteInfo(PCRSelectionList(()), b"\x00" * 32)),
            "not TPM_ST_ATTEST_CERTIFY",
        ),
    ],
    ids=[
        "wrong extraData",
        "SHA-1 of the key authorization",
        "name of nothing",
        "name of another key",
        "signed by another key",
        "ES256 with an RSA AK",
        "RS256 with an ECC AK",
        "TPMT hash differs from alg",
        "EdDSA",
        "a quote, not a certify",
    ],
)
def test_certification_mistakes_are_refused(
    make: Callable[[], dict[str, Any]], needle: str
) -> None:
    assert needle in _problem(lambda: verify(make()))


def test_another_key_authorization_is_refused() -> None:
    assert "extraData" in _problem(lambda: verify(statement(), key_authorization="other.token"))


def test_cert_info_without_the_tpm_generated_magic_is_refused() -> None:
    st = statement()
    st["certInfo"] = b"\x00" + st["certInfo"][1:]
    st["sig"] = tpm_sign(AK_RSA, st["certInfo"])
    assert "TPM_GENERATED" in _problem(lambda: verify(st))


@pytest.mark.parametrize(
    ("attributes", "missing"),
    [
        (SIGNING_KEY_ATTRIBUTES & ~ObjectAttributes.FIXED_TPM, "FIXED_TPM"),
        (SIGNING_KEY_ATTRIBUTES & ~ObjectAttributes.FIXED_PARENT, "FIXED_PARENT"),
        (SIGNING_KEY_ATTRIBUTES & ~ObjectAttributes.SENSITIVE_DATA_ORIGIN, "SENSITIVE_DATA_ORIGIN"),
        (
            (SIGNING_KEY_ATTRIBUTES & ~ObjectAttributes.SIGN) | ObjectAttributes.DECRYPT,
            "SIGN",
        ),
    ],
)
def test_the_certified_key_must_be_a_tpm_bound_signing_key(
    attributes: ObjectAttributes, missing: str
) -> None:
    detail = _problem(
        lambda: verify(statement(public=certified_public_area(attributes=attributes)))
    )
    assert missing in detail


def test_sign_and_decrypt_keys_are_accepted_as_windows_hello_makes_them() -> None:
    attributes = SIGNING_KEY_ATTRIBUTES | ObjectAttributes.DECRYPT | ObjectAttributes.NO_DA
    assert verify(statement(public=certified_public_area(attributes=attributes)))


def test_an_rsa_certified_key_is_returned_as_rsa() -> None:
    key = AK_RSA  # any RSA key will do as the certified key
    numbers = key.public_key().public_numbers()
    public = TPMTPublic(
        name_alg=TPMAlg.SHA256,
        object_attributes=SIGNING_KEY_ATTRIBUTES,
        auth_policy=b"",
        parameters=RSAParms(scheme=Scheme(TPMAlg.RSASSA, TPMAlg.SHA256), key_bits=2048),
        unique=numbers.n.to_bytes(256, "big"),
    )
    result = verify(statement(public=public))
    assert _spki(result.public_key) == _spki(key.public_key())


# --- the AK certificate and its chain -------------------------------------------------


def test_an_untrusted_ak_certificate_is_refused() -> None:
    detail = _problem(lambda: verify(statement(), roots=(OTHER_ROOT.cert,)))
    assert detail == "the AK certificate does not chain to a trusted root"


def test_no_configured_roots_refuses() -> None:
    assert "no trusted roots" in _problem(lambda: verify(statement(), roots=()))


def test_an_expired_ak_certificate_is_refused() -> None:
    certificate = ak_certificate(AK_RSA.public_key(), not_after=NOW - timedelta(seconds=1))
    assert "expired" in _problem(lambda: verify(statement(certificate=certificate)))


def test_an_intermediate_may_come_from_x5c_or_from_the_configuration() -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Attestation CA"))
        .issuer_name(ROOT.cert.subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ROOT.key, hashes.SHA256())
    )
    certificate = ak_certificate(AK_RSA.public_key(), issuer=Authority(ca_key, ca_cert))
    in_x5c = verify(statement(certificate=certificate, chain=[ca_cert]))
    assert [c.subject for c in in_x5c.chain] == [x509.Name([]), ca_cert.subject, ROOT.cert.subject]
    assert verify(statement(certificate=certificate), intermediates=(ca_cert,))
    assert "does not chain" in _problem(lambda: verify(statement(certificate=certificate)))


def _resigned_with_sha1(certificate: x509.Certificate, issuer: Authority) -> x509.Certificate:
    """*certificate* signed ecdsa-with-SHA1 (`cryptography` no longer builds those)."""
    _, body, _ = der.read_tlv(certificate.tbs_certificate_bytes)
    items, position = [], 0
    while position < len(body):
        _, _, end = der.read_tlv(body, position)
        items.append(body[position:end])
        position = end
    sha1_ecdsa = der.sequence(der.object_identifier("1.2.840.10045.4.1"))
    items[2] = sha1_ecdsa
    tbs = der.sequence(*items)
    signature = issuer.key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    return x509.load_der_x509_certificate(
        der.sequence(tbs, sha1_ecdsa, der.tlv(0x03, b"\x00" + signature))
    )


def test_a_sha1_signed_ak_certificate_never_chains() -> None:
    """`cryptography` 50 does not verify SHA-1 certificate signatures at all, so such a
    certificate has no path even with allow_sha1 (which covers alg and nameAlg)."""
    certificate = _resigned_with_sha1(ak_certificate(AK_RSA.public_key()), ROOT)
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA1)
    for allow_sha1 in (False, True):
        detail = _problem(lambda: verify(statement(certificate=certificate), allow_sha1=allow_sha1))  # noqa: B023
        assert detail == "the AK certificate does not chain to a trusted root"


@pytest.mark.parametrize(
    ("certificate", "needle"),
    [
        (lambda: ak_certificate(AK_RSA.public_key(), ca=True), "is a CA"),
        (
            lambda: ak_certificate(
                AK_RSA.public_key(), eku=[x509.ObjectIdentifier("1.3.6.1.5.5.7.3.2")]
            ),
            "tcg-kp-AIKCertificate",
        ),
        (lambda: ak_certificate(AK_RSA.public_key(), digital_signature=False), "digitalSignature"),
    ],
    ids=["CA", "EKU without the AIK purpose", "keyUsage without digitalSignature"],
)
def test_ak_certificate_profile_violations_are_refused(
    certificate: Callable[[], x509.Certificate], needle: str
) -> None:
    assert needle in _problem(lambda: verify(statement(certificate=certificate())))


def test_an_ak_certificate_without_eku_is_accepted() -> None:
    assert verify(statement(certificate=ak_certificate(AK_RSA.public_key(), eku=None)))


def _general_names(*names: bytes) -> bytes:
    return der.sequence(*names)


def _other_name(oid: str, value: bytes) -> bytes:
    return der.tlv(0xA0, der.object_identifier(oid) + der.tlv(0xA0, value))


PERMANENT_IDENTIFIER = "1.3.6.1.5.5.7.8.3"
HARDWARE_MODULE = "1.3.6.1.5.5.7.8.4"

# step-ca CVE-2026-40097 (empty EKU) and its directoryName type assertions: odd but
# signed certificates must give badAttestationStatement or a result, never a crash.
ODD_EXTENSIONS: list[tuple[str, dict[str, bytes]]] = [
    ("EKU is an empty SEQUENCE", {"raw_eku": b"\x30\x00"}),
    ("EKU is not a SEQUENCE", {"raw_eku": b"\x04\x00"}),
    ("EKU holds a non-OID", {"raw_eku": der.sequence(der.tlv(0x0C, b"aik"))}),
    ("SAN is an empty SEQUENCE", {"raw_san": b"\x30\x00"}),
    ("SAN is truncated", {"raw_san": b"\x30\x05\x86\x03ab"}),
    ("SAN is an INTEGER", {"raw_san": b"\x02\x01\x05"}),
    (
        "PermanentIdentifier is an INTEGER",
        {"raw_san": _general_names(_other_name(PERMANENT_IDENTIFIER, b"\x02\x01\x05"))},
    ),
    (
        "PermanentIdentifier is not UTF-8",
        {
            "raw_san": _general_names(
                _other_name(PERMANENT_IDENTIFIER, der.sequence(der.tlv(0x0C, b"\xff\xfe")))
            )
        },
    ),
    (
        "PermanentIdentifier has only an assigner",
        {
            "raw_san": _general_names(
                _other_name(PERMANENT_IDENTIFIER, der.sequence(der.object_identifier("1.2.3")))
            )
        },
    ),
    (
        "PermanentIdentifier has trailing bytes",
        {
            "raw_san": _general_names(
                _other_name(PERMANENT_IDENTIFIER, der.sequence(der.utf8_string("x")) + b"\x00")
            )
        },
    ),
    (
        "hardwareModuleName is empty",
        {"raw_san": _general_names(_other_name(HARDWARE_MODULE, der.sequence()))},
    ),
    (
        "hardwareModuleName serial is a UTF8String",
        {
            "raw_san": _general_names(
                _other_name(
                    HARDWARE_MODULE,
                    der.sequence(der.object_identifier("1.2.3"), der.utf8_string("SN")),
                )
            )
        },
    ),
    (
        "directoryName attribute is an INTEGER",
        {
            "raw_san": _general_names(
                der.tlv(
                    0xA4,
                    der.sequence(
                        der.tlv(
                            0x31,
                            der.sequence(der.object_identifier("2.23.133.2.1"), b"\x02\x01\x05"),
                        )
                    ),
                )
            )
        },
    ),
    (
        "directoryName attribute is a BIT STRING",
        {
            "raw_san": _general_names(
                der.tlv(
                    0xA4,
                    der.sequence(
                        der.tlv(
                            0x31,
                            der.sequence(der.object_identifier("2.5.4.45"), b"\x03\x02\x00\x01"),
                        )
                    ),
                )
            )
        },
    ),
    (
        "directoryName is empty",
        {"raw_san": _general_names(der.tlv(0xA4, der.sequence()))},
    ),
    ("SAN holds an x400Address", {"raw_san": _general_names(der.tlv(0xA3, b"\x30\x00"))}),
    ("SAN holds an ediPartyName", {"raw_san": _general_names(der.tlv(0xA5, b"\x81\x01a"))}),
    ("URI is not IA5", {"raw_san": _general_names(der.tlv(0x86, b"urn:ek:\xff"))}),
]


@pytest.mark.parametrize(
    "extension", [case for _, case in ODD_EXTENSIONS], ids=[name for name, _ in ODD_EXTENSIONS]
)
def test_malformed_ak_certificate_extensions_never_crash_the_verifier(
    extension: dict[str, bytes],
) -> None:
    certificate = ak_certificate(AK_RSA.public_key(), **extension)  # type: ignore[arg-type]
    try:
        result = verify(statement(certificate=certificate))
    except ACMEProblem as problem:
        assert problem.problem == "badAttestationStatement"
        return
    # Accepted: the odd value must not have become an identity.
    assert result.identities() == frozenset()


def test_an_empty_eku_is_refused_not_crashed_on() -> None:
    """step-ca CVE-2026-40097: indexing the first EKU of an empty list panicked."""
    certificate = ak_certificate(AK_RSA.public_key(), raw_eku=b"\x30\x00")
    detail = _problem(lambda: verify(statement(certificate=certificate)))
    assert "extendedKeyUsage" in detail or "extensions" in detail


def test_malformed_identity_values_are_skipped() -> None:
    san = _general_names(
        _other_name(PERMANENT_IDENTIFIER, b"\x02\x01\x05"),
        _other_name(HARDWARE_MODULE, der.sequence()),
        _other_name(PERMANENT_IDENTIFIER, der.sequence(der.utf8_string("device-9"))),
        _other_name(
            HARDWARE_MODULE,
            der.sequence(der.object_identifier("1.2.3"), der.tlv(0x04, b"\x00\x01\xfe")),
        ),
    )
    result = verify(statement(certificate=ak_certificate(AK_RSA.public_key(), raw_san=san)))
    assert result.permanent_identifiers == ("device-9",)
    assert result.serial_numbers == ("0001fe",)  # not printable: hex only


def test_random_corruption_of_the_tpm_structures_never_crashes() -> None:
    rng = random.Random(20230601)
    base = statement()
    for _ in range(300):
        st = dict(base)
        field = rng.choice(["certInfo", "pubArea", "sig"])
        data = bytearray(st[field])
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            if action < 0.6 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action < 0.8 and data:
                del data[rng.randrange(len(data)) :]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        st[field] = bytes(data)
        try:
            verify(st)
        except ACMEProblem as problem:
            assert problem.problem == "badAttestationStatement"
