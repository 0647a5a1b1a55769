"""Write the seed corpora and the fixtures the targets verify against.

``python -m fuzz seeds`` replaces ``fuzz/fixtures/`` and adds the seeds below to
``fuzz/corpus/<target>/`` (named ``seed-<what>``): valid inputs of every kind
each parser accepts, made with the test suite's own builders (tests/attestation_fakes.py
and the attestation format tests), so mutations of them reach the deep checks.
It needs the repository's tests and the vectors they read (tests/vectors/); the fuzz targets
and the corpus tests need neither.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .harness import CORPUS_DIR, FIXTURES_DIR, NOW

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS_DIR / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)


def _fixture(target: str, name: str, data: bytes) -> None:
    directory = FIXTURES_DIR / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=None).encode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _keys() -> dict[str, Key]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "rsa": rsa.generate_private_key(65537, 2048),
    }


def _hash_for(key: Key) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# --- CSRs and tokens ---------------------------------------------------------------------


def _csrs(keys: dict[str, Key]) -> dict[str, bytes]:
    """DER CSRs: a plain one per key type, and ones with every kind of SAN."""
    import ipaddress

    out: dict[str, bytes] = {}
    for kind, key in keys.items():
        builder = x509.CertificateSigningRequestBuilder().subject_name(_name(f"device-{kind}"))
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"{kind}.example")]), critical=False
        )
        out[kind] = builder.sign(key, _hash_for(key)).public_bytes(Encoding.DER)
    many = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "many.example"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                ]
            )
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("many.example"),
                    x509.DNSName("*.many.example"),
                    x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                    x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
                    x509.RFC822Name("ops@many.example"),
                    x509.UniformResourceIdentifier("spiffe://many.example/device"),
                    x509.OtherName(
                        x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3"),
                        bytes.fromhex("3008 0c06 736572 69616c".replace(" ", "")),
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(keys["p256"], hashes.SHA384())
    )
    out["many-sans"] = many.public_bytes(Encoding.DER)
    bare = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    out["empty-subject"] = bare.sign(keys["p256"], hashes.SHA256()).public_bytes(Encoding.DER)
    return out


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)


def _tokens(keys: dict[str, Key]) -> dict[str, str]:
    from engine.jose import jwk_from_public_key, sign_compact

    claims = {
        "iss": "jwk",
        "sub": "device-1",
        "aud": "https://ca.example/1.0/sign",
        "jti": "c2VlZA",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 300,
        "sans": ["device-1.example", "192.0.2.1"],
        "sha": hashlib.sha256(b"csr").hexdigest(),
    }
    out: dict[str, str] = {}
    for kind, key in keys.items():
        out[kind] = sign_compact(claims, key, headers={"kid": f"kid-{kind}"})
        jwk = jwk_from_public_key(key.public_key())
        out[f"{kind}-jwk"] = sign_compact(claims, key, headers={"jwk": jwk})
    out["rsa-ps256"] = sign_compact(claims, keys["rsa"], alg="PS256")
    return out


# --- targets --------------------------------------------------------------------------------


def json_body(keys: dict[str, Key], csrs: dict[str, bytes], tokens: dict[str, str]) -> None:
    bodies: dict[str, Any] = {
        "sign": {
            "csr": _pem(csrs["p256"]).decode(),
            "ott": tokens["p256"],
            "notBefore": "2025-06-01T00:00:00Z",
            "notAfter": "24h",
        },
        "sign-durations": {
            "csr": _pem(csrs["many-sans"]).decode(),
            "ott": tokens["rsa"],
            "notBefore": "-5m",
            "notAfter": "2025-06-02T00:00:00+02:00",
        },
        "revoke": {
            "serial": "123456789",
            "ott": tokens["p256"],
            "reason": "key compromise",
            "reasonCode": 1,
        },
        "revoke-hex": {"serial": "0x75bcd15", "reasonCode": 0},
        "nested": {"a": [1, 2.5, -3e10, True, None, {"b": "\u00e9\u2603"}], "c": {}},
        "array": [1, "two", [3]],
    }
    for name, body in bodies.items():
        _write("json_body", name, b"\x00" + _json(body))
    _write("json_body", "charset", b"\x01" + _json(bodies["revoke"]))


def scalars() -> None:
    values = [
        "24h",
        "1h30m",
        "-5m",
        "90s",
        "1.5h",
        "250ms",
        "7d",
        "0s",
        "2025-06-01T12:00:00Z",
        "2025-06-01T12:00:00+02:00",
        "2025-06-01 12:00:00.123456-05:30",
        "12345",
        "0x1F",
        "0XABCDEF0123456789",
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        "AAAA.AQ",
    ]
    for index, value in enumerate(values):
        _write("scalars", f"{index:02d}", value.encode())


def jose(tokens: dict[str, str]) -> None:
    for name, token in tokens.items():
        _write("jose", name, token.encode())


def acme_jws(keys: dict[str, Key], csrs: dict[str, bytes]) -> None:
    from engine.acme.jws import sign_flattened
    from engine.jose import b64url_encode, jwk_from_public_key

    from .targets.acme_jws import (
        ACCOUNT_KEY,
        BASE,
        EAB_KEYS,
        KEY_CHANGE,
        NEW_ACCOUNT,
        REVOKE_CERT,
    )

    def body(jws: dict[str, Any]) -> bytes:
        return b"\x00" + _json(jws)

    account = {"termsOfServiceAgreed": True, "contact": ["mailto:ops@example.org"]}
    for kind, key in keys.items():
        jwk = jwk_from_public_key(key.public_key())
        jws = sign_flattened(key, account, {"nonce": "bm9uY2U", "url": NEW_ACCOUNT, "jwk": jwk})
        _write("acme_jws", f"new-account-{kind}", body(jws))
    key = keys["p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    jwk = jwk_from_public_key(key.public_key())
    kid, secret = next(iter(EAB_KEYS.items()))
    import hmac

    eab_header = b64url_encode(_json({"alg": "HS256", "kid": kid, "url": NEW_ACCOUNT}))
    eab_payload = b64url_encode(_json(jwk))
    mac = hmac.new(secret, f"{eab_header}.{eab_payload}".encode(), hashlib.sha256).digest()
    binding = {"protected": eab_header, "payload": eab_payload, "signature": b64url_encode(mac)}
    jws = sign_flattened(
        key,
        {**account, "externalAccountBinding": binding},
        {"nonce": "bm9uY2U", "url": NEW_ACCOUNT, "jwk": jwk},
    )
    _write("acme_jws", "new-account-eab", body(jws))
    kid_url = f"{BASE}/acct/1"
    orders: dict[str, dict[str, Any]] = {
        "new-order": {"identifiers": [{"type": "dns", "value": "device.example"}]},
        "new-order-every-kind": {
            "identifiers": [
                {"type": "dns", "value": "*.device.example"},
                {"type": "ip", "value": "192.0.2.9"},
                {"type": "ip", "value": "2001:db8::9"},
                {"type": "permanent-identifier", "value": "device-1234"},
                {"type": "hardware-module", "value": "SN-0042"},
            ],
            "notBefore": "2025-06-01T00:00:00Z",
            "notAfter": "2025-06-02T00:00:00+02:00",
        },
    }
    headers = {"nonce": "bm9uY2U", "kid": kid_url}
    for name, order in orders.items():
        at_new_order = {**headers, "url": f"{BASE}/new-order"}
        _write("acme_jws", name, body(sign_flattened(ACCOUNT_KEY, order, at_new_order)))
    at_finalize = {**headers, "url": f"{BASE}/order/1/finalize"}
    for name, der in csrs.items():
        finalize = {"csr": b64url_encode(der)}
        signed = sign_flattened(ACCOUNT_KEY, finalize, at_finalize)
        _write("acme_jws", f"finalize-{name}", body(signed))
    _write(
        "acme_jws",
        "post-as-get",
        body(sign_flattened(ACCOUNT_KEY, None, {**headers, "url": f"{BASE}/order/1"})),
    )
    new_key = keys["p384"]
    inner = sign_flattened(
        new_key,
        {"account": kid_url, "oldKey": jwk_from_public_key(ACCOUNT_KEY.public_key())},
        {"url": KEY_CHANGE, "jwk": jwk_from_public_key(new_key.public_key())},
    )
    _write(
        "acme_jws",
        "key-change",
        body(sign_flattened(ACCOUNT_KEY, inner, {**headers, "url": KEY_CHANGE})),
    )
    certificate = _certificate(_name("revoked.example"), _name("Fuzz ACME CA"), key, key)
    revocation = {
        "certificate": b64url_encode(certificate.public_bytes(Encoding.DER)),
        "reason": 1,
    }
    by_key: dict[str, Any] = {"nonce": "bm9uY2U", "url": REVOKE_CERT, "jwk": jwk}
    by_account: dict[str, Any] = {**headers, "url": REVOKE_CERT}
    _write("acme_jws", "revoke-cert-by-key", body(sign_flattened(key, revocation, by_key)))
    _write(
        "acme_jws",
        "revoke-cert-by-account",
        body(sign_flattened(ACCOUNT_KEY, revocation, by_account)),
    )


def csr(csrs: dict[str, bytes]) -> None:
    for name, der in csrs.items():
        _write("csr", f"{name}.der", der)
    _write("csr", "p256.pem", _pem(csrs["p256"]))
    _write("csr", "rsa.pem", _pem(csrs["rsa"]))
    resigning()


def resigning() -> None:
    """CSRs of the target's own key, as the CertificationRequestInfo it signs again."""
    from .targets.csr import RESIGN, SIGNING_KEY, request_info

    key: Key = SIGNING_KEY
    for name, der in _csrs({"p256": key}).items():
        _write("csr", f"resign-{name}", bytes([RESIGN]) + request_info(der))


def _vendor() -> Any:
    from tests.attestation_fakes import Vendor

    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name("Fuzz TPM Vendor EK Root")
    root = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Vendor(key, root)


def tpm_and_attest() -> None:
    from tests.attestation_fakes import make_device

    from .harness import join
    from .targets.tpm import AK_CREATION

    vendor = _vendor()
    _fixture("attest", "ek-root.der", vendor.root.public_bytes(Encoding.DER))
    for ek_kind in ("rsa", "ecc"):
        for ak_kind in ("ecc", "rsa"):
            device = make_device(ek_kind, ak_kind)
            cert = vendor.ek_certificate(
                device.ek.public_key,
                not_before=NOW - timedelta(days=1),
                not_after=NOW + timedelta(days=3650),
            )
            name = f"ek-{ek_kind}-ak-{ak_kind}"
            _write("attest", name, _json(device.attest_body(ek_certs=[cert])))
            _write(
                "attest", f"{name}-no-ek", _json(device.attest_body(send_ek=False, ek_certs=[cert]))
            )
            ak = device.ak
            _write("tpm", f"ak-public-{ak_kind}", b"\x00" + ak.public_bytes)
            _write("tpm", f"creation-data-{ak_kind}", b"\x01" + ak.creation_data)
            _write("tpm", f"attest-{ak_kind}", b"\x02" + ak.attestation)
            _write("tpm", f"signature-{ak_kind}", b"\x03" + ak.signature)
            _write(
                "tpm",
                f"ak-creation-{ak_kind}",
                bytes([AK_CREATION])
                + join(ak.public_bytes, ak.creation_data, ak.attestation, ak.signature),
            )
            _write("tpm", f"ek-public-{ek_kind}", b"\x00" + device.ek.public.to_bytes())
    device = make_device("ecc", "ecc")
    _write("attest", "no-certificate", _json(device.attest_body(ek_certs=[])))
    _write("attest", "secret", _json({"secret": _b64(bytes(range(32)))}))


def device_attest() -> None:
    from tests.plugins import test_attestation_apple as apple
    from tests.plugins import test_attestation_step as step
    from tests.plugins import test_attestation_tpm as tpm

    key_authorizations = {
        "tpm": tpm.KEY_AUTHORIZATION,
        "apple": apple.KEY_AUTHORIZATION,
        "step": step.KEY_AUTHORIZATION,
    }
    _fixture("device_attest", "key_authorizations.json", _json(key_authorizations))
    _fixture("device_attest", "tpm-root-0.der", tpm.ROOT.cert.public_bytes(Encoding.DER))
    _fixture("device_attest", "apple-root-0.der", apple.ROOT.cert.public_bytes(Encoding.DER))
    _fixture("device_attest", "step-root-0.der", step.PIV_ROOT.cert.public_bytes(Encoding.DER))

    def obj(fmt: str, statement: dict[str, Any]) -> bytes:
        return bytes(cbor2.dumps({"fmt": fmt, "attStmt": statement}))

    statements: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "tpm-rsa": ("tpm", lambda: tpm.statement()),
        "tpm-rsa-pss": ("tpm", lambda: tpm.statement(pss=True)),
        "tpm-rsa-raw": ("tpm", lambda: tpm.statement(encoding="raw")),
        "tpm-ecc": (
            "tpm",
            lambda: tpm.statement(
                ak=tpm.AK_EC, certificate=tpm.ak_certificate(tpm.AK_EC.public_key())
            ),
        ),
        "apple": ("apple", lambda: apple.statement()),
        "step-ec": ("step", lambda: step.statement()),
        "step-rsa": ("step", lambda: step.statement(step.RSA_KEY, -257)),
        "step-p384": ("step", lambda: step.statement(step.P384_KEY, -35)),
        "step-ed25519": ("step", lambda: step.statement(step.ED_KEY, -8)),
        "step-raw": ("step", lambda: step.statement(wrap=False)),
    }
    for name, (fmt, make) in statements.items():
        _write("device_attest", name, obj(fmt, make()))


def x5c(keys: dict[str, Key]) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(_name("Fuzz X5C Root"), _name("Fuzz X5C Root"), root_key, root_key, ca=True)
    _fixture("x5c", "root.der", root.public_bytes(Encoding.DER))
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = _certificate(
        _name("Fuzz X5C Intermediate"), root.subject, inter_key, root_key, ca=True, path_length=0
    )
    for kind, key in keys.items():
        leaf = _certificate(_name(f"device-{kind}"), inter.subject, key, inter_key)
        chain = [leaf, inter]
        _write("x5c", f"{kind}", _alg_byte(kind) + _ders(chain))
    direct = _certificate(_name("device-direct"), root.subject, keys["p256"], root_key)
    _write("x5c", "direct", _alg_byte("p256") + _ders([direct]))
    _write("x5c", "with-root", _alg_byte("p256") + _ders([direct, root]))


def _alg_byte(kind: str) -> bytes:
    from .targets.x5c import ALGORITHMS

    alg = {"p256": "ES256", "p384": "ES384", "rsa": "RS256", "ed25519": "EdDSA"}[kind]
    return bytes([ALGORITHMS.index(alg)])


def _ders(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.DER) for c in certificates)


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: Key,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    path_length: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return builder.sign(signer, hashes.SHA256())


def acme_validation() -> None:
    import ipaddress

    from .targets.acme_validation import ADDRESS, HOST, KEY_AUTHORIZATION

    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
    for selector, name, san in (
        (0, "alpn-dns", x509.DNSName(HOST)),
        (1, "alpn-ip", x509.IPAddress(ipaddress.ip_address(ADDRESS))),
    ):
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("ACME validation"))
            .issuer_name(_name("ACME validation"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"), b"\x04\x20" + digest
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write("acme_validation", name, bytes([selector]) + certificate.public_bytes(Encoding.DER))
    locations = [
        "https://device.example/.well-known/acme-challenge/dG9rZW4",
        "/elsewhere?x=1",
        "http://192.0.2.8:80/y",
        "http://[2001:db8::1]/",
        "//other.example:443/z",
    ]
    for index, location in enumerate(locations):
        _write("acme_validation", f"location-{index}", b"\x02" + location.encode())
    body = KEY_AUTHORIZATION.encode()
    responses = {
        "ok": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        % (len(body), body),
        "redirect": b"HTTP/1.1 301 Moved\r\nLocation: https://device.example/x\r\n"
        b"Content-Length: 0\r\n\r\n",
        "close": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body + b"\n",
    }
    for name, answer in responses.items():
        _write("acme_validation", f"response-{name}", b"\x03" + answer)


def envelopes() -> None:
    """The seeds of jose, acme_jws and attest again in their envelope form: the binary
    values inside the JSON, so the fuzzer changes them directly."""
    from engine.jose import b64url_decode

    from .harness import corpus, join
    from .targets import acme_jws as acme_target
    from .targets import attest as attest_target
    from .targets import jose as jose_target

    def seed_files(target: str) -> list[Path]:
        return [
            p for p in corpus(target) if p.name.startswith("seed-") and "envelope" not in p.name
        ]

    for path in seed_files("jose"):
        parts = [b64url_decode(part) for part in path.read_text().split(".")]
        _write("jose", f"envelope-{path.name[5:]}", bytes([jose_target.ENVELOPE]) + join(*parts))
    for path in seed_files("acme_jws"):
        flattened = json.loads(path.read_bytes()[1:])
        parts = [b64url_decode(flattened[m]) for m in ("protected", "payload", "signature")]
        _write(
            "acme_jws",
            f"envelope-{path.name[5:]}",
            bytes([acme_target.ENVELOPE]) + join(*parts),
        )
    for path in seed_files("attest"):
        body = json.loads(path.read_bytes())
        if "params" not in body:
            continue
        params = body["params"]
        certificates = body.get("ekCerts") or [""]
        values = [
            _json(body.get("tpmInfo", {})),
            base64.b64decode(body.get("ek", "")),
            base64.b64decode(certificates[0]),
            *(base64.b64decode(params[name]) for name in attest_target.FIELDS[3:]),
        ]
        _write(
            "attest",
            f"envelope-{path.name[5:]}",
            bytes([attest_target.ENVELOPE]) + join(*values),
        )


def write_all() -> list[Path]:
    """Write every fixture and seed; returns the corpus directories."""
    keys = _keys()
    csrs = _csrs(keys)
    tokens = _tokens(keys)
    json_body(keys, csrs, tokens)
    scalars()
    jose(tokens)
    acme_jws(keys, csrs)
    csr(csrs)
    tpm_and_attest()
    device_attest()
    x5c(keys)
    acme_validation()
    envelopes()
    scep()
    oidc()
    cloud()
    return sorted(p for p in CORPUS_DIR.iterdir() if p.is_dir())


def scep() -> None:
    """The RA and client identities of the scep target (fuzz/fixtures/scep/) and its seeds:
    valid requests of every message type, encryption and key transport, their envelopes,
    CSRs (with challenges, version 2), IssuerAndSubject/IssuerAndSerialNumber, CertReps
    and certs-only replies, and the real messages of tests/vectors/scep/."""
    import importlib

    from asn1crypto import cms
    from cryptography.hazmat.primitives.serialization import (
        Encoding as Enc,
    )
    from cryptography.hazmat.primitives.serialization import (
        NoEncryption,
        PrivateFormat,
    )
    from cryptography.x509.name import _ASN1Type

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
        issuer_and_serial,
        issuer_and_subject,
        read_pki_message,
    )
    from tests.engine.scep_fixtures import csr as make_csr
    from tests.engine.scep_fixtures import edit_csr
    from tests.vectors_path import VECTORS

    def identity(common_name: str, key: Key) -> Signer:
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=3650))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return Signer(certificate=certificate, key=key)

    for name in ("ra", "client"):
        signer = identity(f"fuzz SCEP {name}", rsa.generate_private_key(65537, 2048))
        _fixture("scep", f"{name}.pem", signer.certificate.public_bytes(Enc.PEM))
        _fixture(
            "scep",
            f"{name}.key",
            signer.key.private_bytes(Enc.PEM, PrivateFormat.PKCS8, NoEncryption()),
        )
    from .targets import scep as target

    target = importlib.reload(target)
    ra, client = target.RA, target.CLIENT
    ec_client = identity("fuzz SCEP client p256", ec.generate_private_key(ec.SECP256R1()))

    def write(form: int, name: str, data: bytes) -> None:
        _write("scep", name, bytes([form]) + data)

    device = rsa.generate_private_key(65537, 2048)
    csrs = {
        "plain": make_csr(device, "device-1"),
        "challenge": make_csr(device, "device-1", challenge="s3cret"),
        "challenge-utf8": make_csr(
            device, "device-1", challenge="pässwört", challenge_type=_ASN1Type.UTF8String
        ),
        "p256": make_csr(ec.generate_private_key(ec.SECP256R1()), "device-p256", challenge="pw"),
    }

    def version_2(info: Any) -> None:
        info["version"] = 2

    csrs["version-2"] = edit_csr(csrs["challenge"], device, version_2)
    names = {
        "issuer-and-subject": issuer_and_subject(ra.certificate.subject, _name("device-1")),
        "issuer-and-serial": issuer_and_serial(ra.certificate.subject, 0x1234_5678_9ABC),
    }
    contents = {
        MessageType.PKCS_REQ: csrs["challenge"],
        MessageType.RENEWAL_REQ: csrs["plain"],
        MessageType.UPDATE_REQ: csrs["version-2"],
        MessageType.CERT_POLL: names["issuer-and-subject"],
        MessageType.GET_CERT: names["issuer-and-serial"],
        MessageType.GET_CRL: names["issuer-and-serial"],
    }
    messages: dict[str, bytes] = {}
    for message_type, content in contents.items():
        messages[message_type.name.lower()] = build_pki_message(
            message_type=message_type,
            transaction_id=f"fuzz-{int(message_type)}",
            sender_nonce=b"fuzz-nonce-16byt",
            content=content,
            recipient=ra.certificate,
            signer=client,
            now=NOW,
            random=CountingRandom(b"seed"),
        )
    for encryption in ContentEncryption:
        for transport in ("pkcs1v15", "oaep", "oaep-sha1"):
            messages[f"pkcs_req-{encryption.value}-{transport}"] = build_pki_message(
                message_type=MessageType.PKCS_REQ,
                transaction_id="fuzz-19",
                sender_nonce=b"8bytes!!",
                content=csrs["challenge-utf8"],
                recipient=ra.certificate,
                signer=client,
                now=NOW,
                random=CountingRandom(b"seed"),
                encryption=encryption,
                key_transport=transport,
                digest="sha1" if transport == "pkcs1v15" else "sha256",
            )
    messages["pkcs_req-p256-sha384"] = build_pki_message(
        message_type=MessageType.PKCS_REQ,
        transaction_id="fuzz-p256",
        sender_nonce=b"fuzz-nonce-16byt",
        content=csrs["p256"],
        recipient=ra.certificate,
        signer=ec_client,
        now=NOW,
        random=CountingRandom(b"seed"),
        digest="sha384",
    )
    scep_vectors = VECTORS / "scep"
    for name, der in messages.items():
        write(target.MESSAGE, f"message-{name}", der)
        enveloped = read_pki_message(der).enveloped
        assert enveloped is not None
        write(target.ENVELOPE, f"envelope-{name}", enveloped)
    vector_request = (scep_vectors / "PKCSReq.der").read_bytes()
    write(target.MESSAGE, "message-vector-macos", vector_request)
    macos_envelope = read_pki_message(vector_request).enveloped
    assert macos_envelope is not None
    write(target.ENVELOPE, "envelope-vector-macos", macos_envelope)
    for name, der in csrs.items():
        write(target.CSR, f"csr-{name}", der)
        write(target.CONTENT, f"content-csr-{name}", der)
    own = target.SIGNING_KEY
    resigning = {
        "plain": make_csr(own, "device-1"),
        "challenge": make_csr(own, "device-1", challenge="s3cret"),
        "challenge-utf8": make_csr(
            own, "device-1", challenge="pässwört", challenge_type=_ASN1Type.UTF8String
        ),
    }
    resigning["version-2"] = edit_csr(resigning["challenge"], own, version_2)
    for name, der in resigning.items():
        write(target.RESIGN_CSR, f"resign-csr-{name}", _request_info(der))
    for name, der in names.items():
        write(target.NAMES, name, der)
        write(target.CONTENT, f"content-{name}", der)
    issued = identity("device-1", device).certificate
    replies = {
        "success": build_cert_rep(
            signer=ra,
            transaction_id="fuzz-19",
            recipient_nonce=b"fuzz-nonce-16byt",
            sender_nonce=b"server-nonce-16b",
            status=PKIStatus.SUCCESS,
            now=NOW,
            random=CountingRandom(b"rep"),
            content=certs_only([issued, ra.certificate]),
            recipient=client.certificate,
            certificates=[ra.certificate],
        ),
        "failure": build_cert_rep(
            signer=ra,
            transaction_id="fuzz-19",
            recipient_nonce=b"fuzz-nonce-16byt",
            sender_nonce=b"server-nonce-16b",
            status=PKIStatus.FAILURE,
            now=NOW,
            random=CountingRandom(b"rep"),
            fail_info=FailInfo.BAD_REQUEST,
            fail_text="challenge password is wrong",
        ),
        "pending": build_cert_rep(
            signer=ra,
            transaction_id="fuzz-19",
            recipient_nonce=b"fuzz-nonce-16byt",
            sender_nonce=b"server-nonce-16b",
            status=PKIStatus.PENDING,
            now=NOW,
            random=CountingRandom(b"rep"),
            digest="sha1",
        ),
        "certs-only": certs_only([issued, ra.certificate]),
        "vector-certrep": (scep_vectors / "CertRep.der").read_bytes(),
        "vector-ndes": (
            scep_vectors / "testca2" / "CertRep_NoCertificatesForSigners.der"
        ).read_bytes(),
    }
    for name, der in replies.items():
        write(target.CERT_REP, f"certrep-{name}", der)
    for name in ("pkcs_req", "cert_poll"):
        signer_info = cms.ContentInfo.load(messages[name])["content"]["signer_infos"][0]
        attributes = [
            a for a in signer_info["signed_attrs"] if a["type"].native != "message_digest"
        ]
        attributes.append(
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(b"").digest()]})
        )
        signed_attrs = cms.CMSAttributes(sorted(attributes, key=lambda a: a.dump()))
        write(target.ATTRIBUTES, f"attributes-{name}", bytes(signed_attrs.contents))


def _request_info(der: bytes) -> bytes:
    """The CertificationRequestInfo of a DER CSR."""
    from engine.der import read_tlv, tlv

    _, body, _ = read_tlv(der)
    tag, value, _ = read_tlv(body)
    return tlv(tag, value)


def oidc() -> None:
    """The RS256 key of the oidc target (fuzz/fixtures/oidc/) and its seeds: claims of
    tokens the provisioner accepts, admits as an admin or refuses at each check, tokens
    signed with both fixture keys, headers, a provider's JWK sets and discovery
    documents, and the cache headers providers send."""
    import importlib

    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    _fixture("oidc", "rs256.pem", pem)
    target = importlib.reload(importlib.import_module("fuzz.targets.oidc"))

    def write(form: int, name: str, data: bytes) -> None:
        _write("oidc", name, bytes([form]) + data)

    claims: dict[str, Any] = {
        "valid": {},
        "admin-email": {"email": "admin@example.com"},
        "admin-subject": {"sub": "root-7", "email": None, "email_verified": None},
        "audiences": {"aud": ["devid-cli", "other"], "azp": "devid-cli"},
        "no-azp": {"aud": "devid-cli", "azp": None, "jti": None, "nbf": None},
        "groups-string": {"groups": "ops"},
        "unverified": {"email_verified": "true"},
        "odd-username": {"preferred_username": "a.b-c_d"},
        "unicode": {"sub": "\u00e5sa", "preferred_username": "\u00e5sa"},
        "times": {"iat": 1748735990.5, "exp": 1748739590.25, "nbf": None},
        "no-nonce": {"nonce": None},
        "other-domain": {"email": "bob@example.org"},
    }
    for name, value in claims.items():
        write(target.CLAIMS_ES256, f"claims-{name}", _json(value))
    write(target.CLAIMS_RS256, "claims-rs256-valid", b"{}")
    write(target.CLAIMS_RS256, "claims-rs256-admin", _json(claims["admin-email"]))
    write(target.CLAIMS_ES256, "claims-array", b"[1]")
    tokens = {
        "es256": target.signed(target.BASE_HEADER, target.BASE_CLAIMS),
        "rs256": target.signed({**target.BASE_HEADER, "alg": "RS256"}, target.BASE_CLAIMS),
        "ps256": target.signed({**target.BASE_HEADER, "alg": "PS256"}, target.BASE_CLAIMS),
        "no-kid": target.signed({"alg": "ES256"}, target.BASE_CLAIMS),
    }
    for name, token in tokens.items():
        write(target.TOKEN, f"token-{name}", token.encode())
    headers: dict[str, Any] = {
        "valid": {},
        "rs256": {"alg": "RS256"},
        "no-kid": {"kid": None},
        "other-kid": {"kid": "rotated"},
        "es384": {"alg": "ES384"},
        "jwk": {"jwk": {"kty": "EC", "crv": "P-256", "x": "", "y": ""}},
    }
    for name, value in headers.items():
        write(target.HEADER, f"header-{name}", _json(value))
    rotated = dict(target.KEY_SET["keys"][0], kid="rotated", alg="ES256")
    documents = {
        "jwks": target.KEY_SET,
        "jwks-mixed": {
            "keys": [
                rotated,
                dict(target.KEY_SET["keys"][1], alg="RS256", use="sig"),
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc"},
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                },
                "not a key",
            ]
        },
        "discovery": {
            "issuer": target.PROVIDER,
            "jwks_uri": target.JWKS_URI,
            "authorization_endpoint": target.PROVIDER + "/authorize",
            "token_endpoint": target.PROVIDER + "/token",
            "device_authorization_endpoint": target.PROVIDER + "/device",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        },
        "discovery-loopback": {
            "issuer": "http://127.0.0.1:8080",
            "jwks_uri": "http://127.0.0.1:8080/jwks",
        },
    }
    for name, document in documents.items():
        write(target.DOCUMENT, f"document-{name}", _json(document))
    cache_headers = {
        "max-age": b"Cache-Control: public, max-age=300\r\nAge: 120",
        "no-store": b"Cache-Control: no-store, max-age=60",
        "expires": (
            b"Expires: Sun, 01 Jun 2025 06:00:00 GMT\r\nDate: Sun, 01 Jun 2025 00:00:00 GMT"
        ),
        "invalid-expires": b"Expires: 0\r\nContent-Type: application/json",
        "quoted": b'Cache-Control: max-age="600"\r\nCache-Control: must-revalidate',
    }
    for name, lines in cache_headers.items():
        write(target.CACHE_HEADERS, f"headers-{name}", lines)


def cloud() -> None:
    """The keys and certificates of the cloud target (fuzz/fixtures/cloud/: AWS's
    signing keys and ``certificates.<form>`` files, Azure's test root, intermediate and
    metadata.azure.com signer, the key Entra ID's and Google's tokens are signed with)
    and its seeds: valid inputs of every form and each cloud, and refusals at each check
    (accounts, regions, instance ages, nonces, times, subscriptions, resource groups,
    identities that are not a virtual machine's, audiences, tenants, projects)."""
    import importlib

    from cryptography.hazmat.primitives.asymmetric import dsa
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    from hosts.testing.metadata import AZURE_SIGNER_NAME, AZURE_TIME_FORMAT, _certificate

    def private(name: str, key: rsa.RSAPrivateKey | dsa.DSAPrivateKey) -> None:
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        _fixture("cloud", name, pem)

    def pem(*certificates: x509.Certificate) -> bytes:
        return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)

    aws_rsa = rsa.generate_private_key(65537, 2048)
    aws_dsa = dsa.generate_private_key(key_size=1024)
    private("aws-rsa.key", aws_rsa)
    private("aws-dsa.key", aws_dsa)
    aws_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon Web Services LLC"),
        ]
    )
    # us-east-1 and eu-west-1 are admitted; ap-southeast-2 has a certificate but is not.
    for form, key in (("signature", aws_rsa), ("rsa2048", aws_rsa), ("pkcs7", aws_dsa)):
        certificate = pem(_certificate(aws_name, key, aws_name, key, now=NOW, ca=False))
        text = b"".join(
            f"# certificate for {region}\n".encode() + certificate
            for region in ("us-east-1", "eu-west-1", "ap-southeast-2")
        )
        _fixture("cloud", f"aws-{form}.pem", text)
    root_key, intermediate_key, signer_key = (rsa.generate_private_key(65537, 2048) for _ in "abc")
    root_name = _name("Fuzz Azure Root CA")
    intermediate_name = _name("Fuzz Azure TLS Issuing CA")
    root = _certificate(root_name, root_key, root_name, root_key, now=NOW, ca=True)
    intermediate = _certificate(
        intermediate_name, intermediate_key, root_name, root_key, now=NOW, ca=True
    )
    signer = _certificate(
        _name(AZURE_SIGNER_NAME),
        signer_key,
        intermediate_name,
        intermediate_key,
        now=NOW,
        ca=False,
        dns_name=AZURE_SIGNER_NAME,
    )
    _fixture("cloud", "azure-roots.pem", pem(root))
    _fixture("cloud", "azure-intermediates.pem", pem(intermediate))
    _fixture("cloud", "azure-signer.pem", pem(signer))
    private("azure-signer.key", signer_key)
    private("token.key", rsa.generate_private_key(65537, 2048))
    target = importlib.reload(importlib.import_module("fuzz.targets.cloud"))

    def write(form: int, name: str, data: bytes) -> None:
        _write("cloud", name, bytes([form]) + data)

    def stamp(moment: Any) -> str:
        return str(moment.strftime(AZURE_TIME_FORMAT))

    hour = timedelta(hours=1)
    aws_facts: dict[str, Any] = {
        "valid": {},
        "eu-west-1": {"region": "eu-west-1", "availabilityZone": "eu-west-1b"},
        "other-account": {"accountId": "210987654321"},
        "region-not-admitted": {"region": "ap-southeast-2"},
        "region-without-certificate": {"region": "sa-east-1"},
        "no-region": {"region": None},
        "old-instance": {"pendingTime": (NOW - 2 * hour).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "future-instance": {"pendingTime": (NOW + hour).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "bad-pending-time": {"pendingTime": "2025-02-30T00:00:00Z"},
        "bad-ip": {"privateIp": "10.0.0.256"},
        "no-instance-id": {"instanceId": None},
        "bad-instance-id": {"instanceId": "i-XYZ"},
        "descriptive": {"instanceType": "odd type!", "imageId": "ami-1", "architecture": 1},
    }
    for name, value in aws_facts.items():
        write(target.AWS_FACTS, f"aws-facts-{name}", _json(value))
    write(target.AWS_FACTS, "aws-facts-array", b"[1]")

    def document(**changes: Any) -> bytes:
        return str(target.ec2_layout(target.merged(target.BASE_FACTS, changes))).encode()

    signed = {
        "rsa2048-valid": (0, target.aws_signed_data("rsa2048", document())),
        "pkcs7-valid": (1, target.aws_signed_data("pkcs7", document())),
        "rsa2048-eu-west-1": (0, target.aws_signed_data("rsa2048", document(region="eu-west-1"))),
        "pkcs7-other-account": (
            1,
            target.aws_signed_data("pkcs7", document(accountId="210987654321")),
        ),
        "pkcs7-as-rsa2048": (0, target.aws_signed_data("pkcs7", document())),
        # Azure's shape: no signed attributes, the signer's certificate embedded.
        "rsa2048-embedded-signer": (0, base64.b64decode(target.ATTESTED)),
    }
    for name, (choice, der) in signed.items():
        write(target.AWS_SIGNED_DATA, f"aws-{name}", bytes([choice]) + der)
    azure_documents: dict[str, Any] = {
        "valid": {},
        "other-nonce": {"nonce": "0123456789"},
        "expired": {
            "timeStamp": {"createdOn": stamp(NOW - 8 * hour), "expiresOn": stamp(NOW - 2 * hour)}
        },
        "future": {
            "timeStamp": {"createdOn": stamp(NOW + 2 * hour), "expiresOn": stamp(NOW + 8 * hour)}
        },
        "bad-time": {
            "timeStamp": {"createdOn": "02/30/25 00:00:00 -0000", "expiresOn": stamp(NOW)}
        },
        "other-subscription": {"subscriptionId": "00000000-0000-0000-0000-000000000001"},
        "uppercase": {
            "subscriptionId": target.AZURE.subscription_id.upper(),
            "vmId": target.AZURE.vm_id.upper(),
        },
        "no-vm-id": {"vmId": None},
        "no-nonce": {"nonce": None},
    }
    for name, value in azure_documents.items():
        write(target.AZURE_DOCUMENT, f"azure-document-{name}", _json(value))
    write(target.AZURE_DOCUMENT, "azure-document-array", b"[1]")
    now = int(NOW.timestamp())
    mirid = target.AZURE.resource_id
    azure_claims: dict[str, Any] = {
        "valid": {},
        "uppercase-mirid": {"xms_mirid": mirid.upper(), "tid": target.AZURE.tenant_id.upper()},
        "other-resource": {"aud": "api://other"},
        "other-tenant": {"tid": "00000000-0000-0000-0000-000000000001"},
        "other-issuer": {"iss": "https://login.microsoftonline.com/other/v2.0"},
        "expired": {"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200},
        "long-lived": {"exp": now + 3 * 86400},
        "no-exp": {"exp": None},
        "no-mirid": {"xms_mirid": None},
        "user-assigned": {
            "xms_mirid": mirid.split("/providers/")[0]
            + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared"
        },
        "scale-set": {"xms_mirid": mirid.replace("virtualMachines", "virtualMachineScaleSets")},
        "other-group": {"xms_mirid": mirid.replace("my-group", "other-group")},
    }
    for name, value in azure_claims.items():
        write(target.AZURE_CLAIMS, f"azure-claims-{name}", _json(value))
    aws_document = document().decode()
    evidence: dict[str, tuple[int, Any]] = {
        "aws-signature": (
            0,
            {"document": aws_document, "signature": target.aws_signature(aws_document)},
        ),
        "aws-rsa2048-with-document": (
            0,
            {
                "document": aws_document,
                "rsa2048": _b64(target.aws_signed_data("rsa2048", document())),
            },
        ),
        "aws-pkcs7": (0, {"pkcs7": _b64(target.aws_signed_data("pkcs7", document()))}),
        "aws-two-forms": (
            0,
            {
                "document": aws_document,
                "signature": target.aws_signature(aws_document),
                "rsa2048": _b64(target.aws_signed_data("rsa2048", document())),
            },
        ),
        "aws-unknown-member": (0, {"document": aws_document, "nonce": "1"}),
        "azure-valid": (1, {"access_token": target.ACCESS_TOKEN, "attested": target.ATTESTED}),
        "azure-no-attested": (1, {"access_token": target.ACCESS_TOKEN}),
        "azure-not-base64": (1, {"access_token": target.ACCESS_TOKEN, "attested": "%%"}),
    }
    for name, (choice, value) in evidence.items():
        write(target.EVIDENCE, f"evidence-{name}", bytes([choice]) + _json(value))
    aws_evidence = evidence["aws-signature"][1]
    azure_evidence = evidence["azure-valid"][1]
    tokens = {
        "aws-request": target.identity_request("aws", aws_evidence),
        "azure-request": target.identity_request("azure", azure_evidence),
        "gcp": target.token(target.BASE_GCP_CLAIMS),
        "gcp-for-aws": target.token({**target.BASE_GCP_CLAIMS, "aud": target.audience("aws")}),
        "other-ca": target.sign_compact(
            {
                "aud": "https://other.example.com/1.0/sign#aws",
                "iat": now,
                "exp": now + 300,
                "aws": aws_evidence,
            },
            target.CSR_KEY,
            headers={"typ": target.IDENTITY_REQUEST_TYPE},
        ),
        "expired-request": target.sign_compact(
            {"aud": target.audience("azure"), "iat": now - 900, "exp": now - 600, "azure": {}},
            target.CSR_KEY,
            headers={"typ": target.IDENTITY_REQUEST_TYPE},
        ),
        "not-jws": "not a token",
    }
    for name, token in tokens.items():
        write(target.TOKEN, f"token-{name}", token.encode())
    engine = target.BASE_GCP_CLAIMS["google"]["compute_engine"]
    gcp_claims: dict[str, Any] = {
        "valid": {},
        "other-project": {"google": {"compute_engine": {**engine, "project_id": "other"}}},
        "old-instance": {
            "google": {
                "compute_engine": {**engine, "instance_creation_timestamp": now - 7200},
            }
        },
        "other-audience": {"aud": "https://other.example.com/1.0/sign#gcp"},
        "no-compute-engine": {"google": None},
        "expired": {"exp": now - 60, "iat": now - 3660},
    }
    for name, value in gcp_claims.items():
        write(target.GCP_CLAIMS, f"gcp-claims-{name}", _json(value))
