"""X5C provisioner: a genuine device certificate gets an account certificate; forgeries do not.

The CA under test trusts its own Agent CA for X5C (``roots = certs/agent_ca.crt``);
built in code it issues from the Account CA, as accounts do, and configured in
devid.toml from the TLS CA (the only issuer a configured X5C provisioner may name).
The device's certificate comes from the Agent CA as device-attest-01 would issue
it (clientAuth, recorded as the ``devices`` provisioner's; JWK tokens issue from
the TLS CA, never the Agent CA); the odd leaves the forgeries need are signed
with the Agent CA's key directly, or by CAs the tests build with cryptography.

Each case runs twice: through ``X5CProvisioner.authorize_sign`` (a provisioner
built in code, as accounts will build them) followed by the engine pipeline,
and through the full in-process signing path (``hosts.http.api.sign_body``).
Unauthorized means a bad
credential, Forbidden a valid credential that does not allow the request,
BadRequest malformed input. A refused request stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import parse_csr
from engine.errors import BadRequest, Forbidden, ProtocolError, Unauthorized
from engine.extensions import ProvisionerRef
from engine.jose import MAX_TOKEN_BYTES, PrivateKey, b64url_encode, sign_compact
from engine.names import SAN
from engine.pipeline import (
    SignRequest,
    issue_certificate,
    issue_own_certificate,
)
from engine.ports import CountingRandom, FrozenClock
from engine.template import CertificateTemplate
from hosts.core.authority import Authority
from plugins.certpaths import MAX_X5C_CERTIFICATES, MAX_X5C_ENTRY_CHARS
from plugins.x5c import X5CProvisioner, mint_x5c_token, x5c_header
from tests.conftest import CA, new_csr, revoke_json, sign_json

NAME = "accounts"
BASE = "https://ca.test"
AUDIENCE = f"{BASE}/1.0/sign"
USER = "alice.wifi.example.com"


# --- the CA under test and its device ---------------------------------------------------------


def add_x5c_provisioner(ca: CA, **options: Any) -> None:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(
        {
            "type": "X5C",
            "name": NAME,
            "issuer": "tls",
            "roots": ["certs/agent_ca.crt"],
            **options,
        }
    )
    path.write_text(tomli_w.dumps(config))


@pytest.fixture
def authority(ca: CA, clock: FrozenClock) -> Iterator[Authority]:
    """The CA with an X5C provisioner trusting its Agent CA, on a frozen clock."""
    add_x5c_provisioner(ca)
    auth = Authority.load(ca.data_dir, ca.password, clock=clock, random=CountingRandom())
    auth.set_base_urls([BASE])
    yield auth
    auth.close()


@attrs.frozen
class Holder:
    """A certificate, its private key and the chain a token carries (leaf first)."""

    key: Any
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def agent_ca(authority: Authority) -> x509.Certificate:
    return authority.issuers["agent"].certificate


def enrol_device(authority: Authority, ca: CA, name: str = "device-1.example.com") -> Holder:
    """A device certificate from the Agent CA, as the ``devices`` provisioner issues and
    records it (clientAuth, the device's name as CN and SAN)."""
    issuer = authority.issuers["agent"]
    key = ec.generate_private_key(ec.SECP256R1())
    template = CertificateTemplate(
        subject=_name(name),
        sans=(SAN.parse(name),),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    issued = issue_own_certificate(
        template,
        key.public_key(),
        issuer,
        ProvisionerRef(type="ACME", name="devices"),
        now=authority.clock.now(),
        lifetime=timedelta(hours=24),
        random=authority.random,
    )
    authority.record_issued(issued)
    cert = issued.certificate
    return Holder(key=key, certificate=cert, chain=(cert, agent_ca(authority)))


@pytest.fixture
def device(authority: Authority, ca: CA) -> Holder:
    return enrol_device(authority, ca)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ku(*, digital_signature: bool = True, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=not digital_signature,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificate(
    issuer: Holder | None,
    *,
    cn: str,
    now: datetime,
    not_before: timedelta = timedelta(minutes=-1),
    not_after: timedelta = timedelta(hours=24),
    ca: bool = False,
    ekus: list[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | None = None,
    extra: list[tuple[x509.ExtensionType, bool]] | None = None,
    key: Any = None,
    issuer_name: x509.Name | None = None,
) -> Holder:
    """A certificate built with cryptography; *issuer* None makes it self-signed."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(
            issuer_name or (issuer.certificate.subject if issuer is not None else _name(cn))
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage or _ku(digital_signature=not ca, cert_sign=ca), critical=True)
    )
    if ekus is None and not ca:
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    for ext, critical in extra or []:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(signer_key, hashes.SHA256())
    chain = (cert, *issuer.chain) if issuer is not None else (cert,)
    return Holder(key=key, certificate=cert, chain=chain)


def agent_signer(authority: Authority) -> Holder:
    """The Agent CA itself, to mint leaves no honest flow would produce."""
    agent = authority.issuers["agent"]
    key: CertificateIssuerPrivateKeyTypes = agent.signer.private_key
    return Holder(key=key, certificate=agent.certificate, chain=(agent.certificate,))


def agent_leaf(authority: Authority, **kwargs: Any) -> Holder:
    return make_certificate(
        agent_signer(authority), cn="odd-device.example.com", now=authority.clock.now(), **kwargs
    )


# --- tokens --------------------------------------------------------------------------------------


def x5c_token(
    authority: Authority,
    holder: Holder,
    subject: str = USER,
    sans: list[str] | None = None,
    **kwargs: Any,
) -> str:
    return mint_x5c_token(
        holder.key,
        list(holder.chain),
        provisioner=kwargs.pop("provisioner", NAME),
        subject=subject,
        sans=sans or [subject],
        audience=kwargs.pop("audience", AUDIENCE),
        now=kwargs.pop("now", authority.clock.now()),
        jti=kwargs.pop("jti", uuid.uuid4().hex),
        **kwargs,
    )


def claims_for(authority: Authority, **changes: Any) -> dict[str, Any]:
    now = int(authority.clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": NAME,
        "sub": USER,
        "aud": AUDIENCE,
        "sans": [USER],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return claims


def _segment(obj: Any) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def _assemble(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_segment(header)}.{_segment(claims)}.{b64url_encode(signature)}"


def signed_with_header(
    holder: Holder, header_x5c: Any, claims: dict[str, Any], *, drop: bool = False
) -> str:
    """A token signed by *holder*'s key whose x5c header is *header_x5c* (absent if drop)."""
    headers = {} if drop else {"x5c": header_x5c}
    return sign_compact(claims, holder.key, headers=headers)


# --- submitting ----------------------------------------------------------------------------------

Submit = Callable[[Authority, str, str], x509.Certificate]


def code_provisioner(authority: Authority, **options: Any) -> X5CProvisioner:
    """The provisioner accounts would build at run time: trusts the Agent CA, Account CA issues."""
    return X5CProvisioner(name=NAME, issuer="account", roots=[agent_ca(authority)], **options)


def _via_provisioner(authority: Authority, token: str, csr_pem: str) -> x509.Certificate:
    """authorize_sign, then the engine pipeline; no store, no replay cache."""
    csr = parse_csr(csr_pem)
    provisioner = code_provisioner(authority)
    authorization = provisioner.authorize_sign(token, csr, authority.context("/1.0/sign"))
    assert authorization.policy is not None
    issued = issue_certificate(
        SignRequest(csr=csr),
        authorization.policy,
        authority.issuers[authorization.policy.issuer],
        authority.clock,
        authority.random,
    )
    return issued.certificate


def _via_authority(authority: Authority, token: str, csr_pem: str) -> x509.Certificate:
    response = sign_json(authority, {"csr": csr_pem, "ott": token})
    return x509.load_pem_x509_certificate(response["crt"].encode())


@pytest.fixture(params=["provisioner", "authority"])
def submit(request: pytest.FixtureRequest) -> Submit:
    return _via_provisioner if request.param == "provisioner" else _via_authority


def refuse(
    submit: Submit,
    authority: Authority,
    token: str,
    csr_pem: str,
    error: type[ProtocolError],
    match: str,
) -> None:
    """The request fails with *error* (or a subclass such as ChainError) and stores nothing."""
    before = authority.stores.certificates.count_certificates()
    with pytest.raises(ProtocolError, match=match) as info:
        submit(authority, token, csr_pem)
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    assert authority.stores.certificates.count_certificates() == before


CSR_PEM = new_csr(USER)[2]


# --- the genuine device --------------------------------------------------------------------------


def test_device_certificate_gets_an_account_certificate(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    cert = submit(authority, x5c_token(authority, device), CSR_PEM)
    assert cert.subject.rfc4514_string() == f"CN={USER}"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [USER]
    # Built in code as accounts build it: the Account CA; configured in devid.toml: the
    # TLS CA (only accounts issue from the Account CA, docs/ca.md).
    issuer = "account" if submit is _via_provisioner else "tls"
    assert cert.issuer == authority.issuers[issuer].certificate.subject
    ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(ekus) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # the template's, not serverAuth too
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("X5C", NAME)


def test_the_leaf_alone_is_enough_when_it_is_signed_by_a_root(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    leaf_only = attrs.evolve(device, chain=(device.certificate,))
    submit(authority, x5c_token(authority, leaf_only), CSR_PEM)


def test_evidence_names_the_leaf_and_the_root(authority: Authority, device: Holder) -> None:
    cert = _via_authority(authority, x5c_token(authority, device, jti="evidence-1"), CSR_PEM)
    record = authority.stores.certificates.get_certificate(format(cert.serial_number, "x"))
    assert record is not None
    assert record.provisioner_type == "X5C"
    assert record.provisioner_name == NAME
    leaf = device.certificate
    root = agent_ca(authority)
    assert record.evidence == {
        "method": "x5c-token",
        "jti": "evidence-1",
        "leaf_subject": leaf.subject.rfc4514_string(),
        "leaf_serial": format(leaf.serial_number, "x"),
        "leaf_sha256": hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
        "leaf_issuer": root.subject.rfc4514_string(),
        "root_subject": root.subject.rfc4514_string(),
        "root_sha256": hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest(),
    }


# --- the certificate path: Unauthorized -------------------------------------------------------


def test_chain_to_another_root_is_unauthorized(submit: Submit, authority: Authority) -> None:
    now = authority.clock.now()
    other_root = make_certificate(None, cn="Other Root", now=now, ca=True)
    leaf = make_certificate(other_root, cn="device-1.example.com", now=now)
    refuse(submit, authority, x5c_token(authority, leaf), CSR_PEM, Unauthorized, "chain")


def test_impostor_ca_with_the_agent_cas_name_is_unauthorized(
    submit: Submit, authority: Authority
) -> None:
    # A CA of the attacker's own whose subject (and issuer) copy the real Agent CA's.
    now = authority.clock.now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = agent_ca(authority).subject
    impostor_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(agent_ca(authority).serial_number)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    impostor = Holder(key=key, certificate=impostor_cert, chain=(impostor_cert,))
    leaf = make_certificate(impostor, cn="device-1.example.com", now=now)
    refuse(submit, authority, x5c_token(authority, leaf), CSR_PEM, Unauthorized, "chain")
    # Leaving the impostor out of x5c does not help either.
    alone = attrs.evolve(leaf, chain=(leaf.certificate,))
    refuse(submit, authority, x5c_token(authority, alone), CSR_PEM, Unauthorized, "chain")


def test_leaf_issued_by_a_device_certificate_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    # The device uses its own (non-CA) certificate's key to issue itself another "leaf".
    sub_leaf = make_certificate(device, cn="device-2.example.com", now=authority.clock.now())
    refuse(submit, authority, x5c_token(authority, sub_leaf), CSR_PEM, Unauthorized, "chain")


def test_expired_leaf_is_unauthorized(submit: Submit, authority: Authority) -> None:
    old = agent_leaf(authority, not_before=-timedelta(days=2), not_after=-timedelta(seconds=1))
    refuse(submit, authority, x5c_token(authority, old), CSR_PEM, Unauthorized, "expired")


def test_not_yet_valid_leaf_is_unauthorized(submit: Submit, authority: Authority) -> None:
    early = agent_leaf(authority, not_before=timedelta(minutes=10), not_after=timedelta(days=1))
    refuse(submit, authority, x5c_token(authority, early), CSR_PEM, Unauthorized, "not yet valid")


def test_leaf_that_is_a_ca_is_unauthorized(submit: Submit, authority: Authority) -> None:
    ca_leaf = agent_leaf(authority, ca=True, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])
    refuse(submit, authority, x5c_token(authority, ca_leaf), CSR_PEM, Unauthorized, "is a CA")


def test_leaf_without_client_auth_is_unauthorized(submit: Submit, authority: Authority) -> None:
    server_only = agent_leaf(authority, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    refuse(
        submit, authority, x5c_token(authority, server_only), CSR_PEM, Unauthorized, "clientAuth"
    )


def test_leaf_with_any_extended_key_usage_but_no_client_auth_is_unauthorized(
    submit: Submit, authority: Authority
) -> None:
    anything = agent_leaf(authority, ekus=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    refuse(submit, authority, x5c_token(authority, anything), CSR_PEM, Unauthorized, "clientAuth")


def test_leaf_without_digital_signature_is_unauthorized(
    submit: Submit, authority: Authority
) -> None:
    encipher_only = agent_leaf(authority, key_usage=_ku(digital_signature=False))
    token = x5c_token(authority, encipher_only)
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "digitalSignature")


def test_leaf_without_key_usage_or_eku_extensions_is_accepted(
    submit: Submit, authority: Authority
) -> None:
    now = authority.clock.now()
    agent = agent_signer(authority)
    key = ec.generate_private_key(ec.SECP256R1())
    bare = (
        x509.CertificateBuilder()
        .subject_name(_name("bare.example.com"))
        .issuer_name(agent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(agent.key, hashes.SHA256())
    )
    holder = Holder(key=key, certificate=bare, chain=(bare,))
    submit(authority, x5c_token(authority, holder), CSR_PEM)


def test_leaf_with_an_unknown_critical_extension_is_unauthorized(
    submit: Submit, authority: Authority
) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    leaf = agent_leaf(authority, extra=[(odd, True)])
    refuse(submit, authority, x5c_token(authority, leaf), CSR_PEM, Unauthorized, "critical")


# --- the signature: Unauthorized --------------------------------------------------------------


def test_token_signed_by_a_key_other_than_the_leafs_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = sign_compact(claims_for(authority), forger, headers={"x5c": x5c_header(device.chain)})
    refuse(submit, authority, forged, CSR_PEM, Unauthorized, "does not verify")


def test_another_devices_chain_with_my_signature_is_unauthorized(
    submit: Submit, authority: Authority, ca: CA, device: Holder
) -> None:
    other = enrol_device(authority, ca, "device-2.example.com")
    # My key, the other device's (valid) certificate chain.
    token = sign_compact(
        claims_for(authority), device.key, headers={"x5c": x5c_header(other.chain)}
    )
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "does not verify")


def test_tampered_claims_are_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    token = x5c_token(authority, device)
    header, _, signature = token.split(".")
    tampered = f"{header}.{_segment(claims_for(authority, sub='admin.example.com'))}.{signature}"
    refuse(submit, authority, tampered, CSR_PEM, Unauthorized, "does not verify")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder, alg: str
) -> None:
    unsigned = _assemble({"alg": alg, "x5c": x5c_header(device.chain)}, claims_for(authority))
    refuse(submit, authority, unsigned, CSR_PEM, Unauthorized, "not allowed")


def _leaf_public_secrets(device: Holder) -> dict[str, bytes]:
    public = device.certificate.public_key()
    return {
        "pem": public.public_bytes(Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "x962": public.public_bytes(Encoding.X962, serialization.PublicFormat.UncompressedPoint),
        "certificate": device.certificate.public_bytes(Encoding.DER),
    }


@pytest.mark.parametrize("secret", ["pem", "der", "x962", "certificate"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_token_keyed_with_the_leafs_public_key_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder, secret: str, alg: str
) -> None:
    key = _leaf_public_secrets(device)[secret]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "x5c": x5c_header(device.chain)}
    claims = claims_for(authority)
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    forged = _assemble(header, claims, hmac.new(key, signing_input, digest).digest())
    refuse(submit, authority, forged, CSR_PEM, Unauthorized, "not allowed")


def test_es384_header_on_a_p256_leaf_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    header = {"alg": "ES384", "x5c": x5c_header(device.chain)}
    claims = claims_for(authority)
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    r, s = decode_dss_signature(device.key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    confused = _assemble(header, claims, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    refuse(submit, authority, confused, CSR_PEM, Unauthorized, "not allowed")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA", "RS512", "ES512", "ES256K"])
def test_header_naming_an_algorithm_the_leaf_key_cannot_use_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder, alg: str
) -> None:
    header = {"alg": alg, "x5c": x5c_header(device.chain)}
    confused = _assemble(header, claims_for(authority), b"\x5a" * 256)
    refuse(submit, authority, confused, CSR_PEM, Unauthorized, "not allowed")


def test_embedded_jwk_header_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    from engine.jose import jwk_from_public_key

    token = sign_compact(
        claims_for(authority),
        forger,
        headers={"x5c": x5c_header(device.chain), "jwk": jwk_from_public_key(forger.public_key())},
    )
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "only through x5c")


# --- the x5c header itself -----------------------------------------------------------------------


def test_token_without_x5c_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    token = signed_with_header(device, None, claims_for(authority), drop=True)
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "no x5c")


@pytest.mark.parametrize("value", [[], None])
def test_token_with_an_empty_x5c_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder, value: Any
) -> None:
    token = signed_with_header(device, value, claims_for(authority))
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "no x5c")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: _b64(d.certificate.public_bytes(Encoding.DER)), "must be a list"),
        (lambda d: {"0": _b64(d.certificate.public_bytes(Encoding.DER))}, "must be a list"),
        (lambda d: [42], "not a base64 string"),
        (lambda d: [""], "not a base64 string"),
        (lambda d: ["!!! not base64 !!!"], "not standard base64"),
        (
            lambda d: [
                base64.urlsafe_b64encode(d.certificate.public_bytes(Encoding.DER))
                .decode()
                .replace("=", "")
            ],
            "not standard base64",
        ),
        (lambda d: [_b64(d.certificate.public_bytes(Encoding.DER))[:-1]], "not standard base64"),
        (lambda d: [_b64(b"\x30\x03\x02\x01\x01")], "not a DER certificate"),
        (lambda d: [_b64(d.certificate.public_bytes(Encoding.PEM))], "not a DER certificate"),
        (lambda d: [_b64(b"garbage" * 10)], "not a DER certificate"),
    ],
    ids=[
        "string",
        "object",
        "number",
        "empty-entry",
        "not-base64",
        "base64url",
        "bad-padding",
        "not-a-certificate",
        "pem-in-base64",
        "garbage",
    ],
)
def test_malformed_x5c_is_a_bad_request(
    submit: Submit,
    authority: Authority,
    device: Holder,
    make: Callable[[Holder], Any],
    match: str,
) -> None:
    token = signed_with_header(device, make(device), claims_for(authority))
    refuse(submit, authority, token, CSR_PEM, BadRequest, match)


def test_x5c_with_too_many_certificates_is_a_bad_request(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    entries = x5c_header(device.chain)
    padded = [entries[0]] + [entries[1]] * MAX_X5C_CERTIFICATES
    token = signed_with_header(device, padded, claims_for(authority))
    refuse(submit, authority, token, CSR_PEM, BadRequest, "more than")


def test_oversized_x5c_entry_is_a_bad_request(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    huge = _b64(b"\x00" * (MAX_X5C_ENTRY_CHARS // 4 * 3 + 3))
    assert len(huge) > MAX_X5C_ENTRY_CHARS
    token = signed_with_header(device, [*x5c_header(device.chain), huge], claims_for(authority))
    refuse(submit, authority, token, CSR_PEM, BadRequest, "too large")


def test_oversized_token_is_a_bad_request(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    claims = claims_for(authority, padding="x" * MAX_TOKEN_BYTES)
    token = signed_with_header(device, x5c_header(device.chain), claims)
    refuse(submit, authority, token, CSR_PEM, BadRequest, "too large")


# --- the claims: Unauthorized -----------------------------------------------------------------


def test_token_for_another_ca_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    elsewhere = x5c_token(authority, device, audience="https://other-ca.test/1.0/sign")
    refuse(submit, authority, elsewhere, CSR_PEM, Unauthorized, "audience")


def test_revoke_token_presented_for_signing_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    revoke = x5c_token(authority, device, audience=f"{BASE}/1.0/revoke")
    refuse(submit, authority, revoke, CSR_PEM, Unauthorized, "audience")


def test_token_from_another_issuer_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    token = x5c_token(authority, device, provisioner="intruder")
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "intruder")


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ("admin", "does not verify"),  # the JWK provisioner checks it with its own key
        ("acme", "not a provisioner that signs tokens"),
        ("devices", "not a provisioner that signs tokens"),
    ],
)
def test_x5c_token_naming_another_provisioner_is_unauthorized(
    authority: Authority, device: Holder, other: str, match: str
) -> None:
    token = x5c_token(authority, device, provisioner=other)
    refuse(_via_authority, authority, token, CSR_PEM, Unauthorized, match)


def test_expired_token_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    old = x5c_token(authority, device, now=authority.clock.now() - timedelta(minutes=10))
    refuse(submit, authority, old, CSR_PEM, Unauthorized, "expired")


def test_token_living_longer_than_the_limit_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    long_lived = x5c_token(authority, device, lifetime=timedelta(minutes=5, seconds=1))
    refuse(submit, authority, long_lived, CSR_PEM, Unauthorized, "lifetime")


def test_hour_long_token_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    day = x5c_token(authority, device, lifetime=timedelta(hours=24))
    refuse(submit, authority, day, CSR_PEM, Unauthorized, "lifetime")


@pytest.mark.parametrize("missing", ["jti", "exp", "sub"])
def test_token_missing_a_required_claim_is_unauthorized(
    submit: Submit, authority: Authority, device: Holder, missing: str
) -> None:
    claims = claims_for(authority)
    del claims[missing]
    token = signed_with_header(device, x5c_header(device.chain), claims)
    refuse(submit, authority, token, CSR_PEM, Unauthorized, missing)


def test_replayed_token_is_unauthorized_and_the_first_certificate_stays(
    authority: Authority, device: Holder
) -> None:
    before = authority.stores.certificates.count_certificates()
    token = x5c_token(authority, device)
    first = _via_authority(authority, token, CSR_PEM)
    with pytest.raises(Unauthorized, match="already been used"):
        _via_authority(authority, token, new_csr(USER)[2])
    assert authority.stores.certificates.count_certificates() == before + 1
    record = authority.stores.certificates.get_certificate(format(first.serial_number, "x"))
    assert record is not None and record.status == "active"


def test_jti_is_single_use_across_tokens(authority: Authority, device: Holder) -> None:
    _via_authority(authority, x5c_token(authority, device, jti="same"), CSR_PEM)
    with pytest.raises(Unauthorized, match="already been used"):
        _via_authority(authority, x5c_token(authority, device, jti="same"), CSR_PEM)


def test_token_is_remembered_until_it_stops_verifying(authority: Authority, device: Holder) -> None:
    at = authority.clock.now()
    provisioner = authority.provisioners[NAME]
    authorization = provisioner.authorize_sign(
        x5c_token(authority, device, jti="t-1"),
        parse_csr(CSR_PEM),
        authority.context("/1.0/sign"),
    )
    assert authorization.token is not None
    assert authorization.token.provisioner == NAME
    assert authorization.token.token_id == "t-1"
    # exp plus the clock-skew leeway (TokenTimes.replay_until).
    assert authorization.token.expires_at == at + timedelta(minutes=6)


# --- names: Forbidden ------------------------------------------------------------------------


def test_csr_with_a_san_the_token_does_not_name_is_forbidden(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    csr_pem = new_csr(USER, [USER, "evil.example.com"])[2]
    refuse(submit, authority, x5c_token(authority, device), csr_pem, Forbidden, "evil.example.com")


def test_csr_common_name_other_than_the_token_subject_is_forbidden(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    csr_pem = new_csr("bob.wifi.example.com", [USER])[2]
    refuse(submit, authority, x5c_token(authority, device), csr_pem, Forbidden, "common name")


def test_csr_missing_a_san_the_token_names_is_forbidden(
    submit: Submit, authority: Authority, device: Holder
) -> None:
    token = x5c_token(authority, device, sans=[USER, "10.0.0.1"])
    refuse(submit, authority, token, CSR_PEM, Forbidden, "missing")


# --- validity: clamped to the x5c path ------------------------------------------------------


def test_issued_not_after_is_clamped_to_the_leafs(submit: Submit, authority: Authority) -> None:
    short = agent_leaf(authority, not_after=timedelta(hours=3))
    cert = submit(authority, x5c_token(authority, short), CSR_PEM)
    assert cert.not_valid_after_utc == short.certificate.not_valid_after_utc
    assert cert.not_valid_after_utc < authority.clock.now() + timedelta(hours=24)


def test_requested_not_after_beyond_the_leaf_is_forbidden(
    authority: Authority, device: Holder
) -> None:
    short = agent_leaf(authority, not_after=timedelta(hours=3))
    before = authority.stores.certificates.count_certificates()
    with pytest.raises(Forbidden, match="credential allows"):
        sign_json(authority, {"csr": CSR_PEM, "ott": x5c_token(authority, short), "notAfter": "6h"})
    assert authority.stores.certificates.count_certificates() == before
    cert = x509.load_pem_x509_certificate(
        sign_json(
            authority, {"csr": CSR_PEM, "ott": x5c_token(authority, short), "notAfter": "2h"}
        )["crt"].encode()
    )
    assert cert.not_valid_after_utc == authority.clock.now() + timedelta(hours=2)


def test_leaf_expiring_before_the_minimum_duration_is_forbidden(
    submit: Submit, authority: Authority
) -> None:
    dying = agent_leaf(authority, not_after=timedelta(minutes=4))
    refuse(submit, authority, x5c_token(authority, dying), CSR_PEM, Forbidden, "minimum")


def test_leaf_expiring_exactly_at_the_minimum_duration_is_accepted(
    submit: Submit, authority: Authority
) -> None:
    edge = agent_leaf(authority, not_after=timedelta(minutes=5))
    cert = submit(authority, x5c_token(authority, edge), CSR_PEM)
    assert cert.not_valid_after_utc == edge.certificate.not_valid_after_utc


# --- allowed_subjects and allowed_sans ---------------------------------------------------------


@pytest.fixture
def restricted(ca: CA, clock: FrozenClock) -> Iterator[Authority]:
    add_x5c_provisioner(
        ca,
        allowed_subjects=["*.wifi.example.com"],
        allowed_sans=["*.wifi.example.com", "10.0.0.0/8"],
    )
    auth = Authority.load(ca.data_dir, ca.password, clock=clock, random=CountingRandom())
    auth.set_base_urls([BASE])
    yield auth
    auth.close()


def test_names_inside_allowed_patterns_are_accepted(restricted: Authority, ca: CA) -> None:
    device = enrol_device(restricted, ca)
    token = x5c_token(restricted, device, sans=[USER, "10.1.2.3"])
    cert = _via_authority(restricted, token, new_csr(USER, [USER, "10.1.2.3"])[2])
    assert cert.subject.rfc4514_string() == f"CN={USER}"


def test_token_san_outside_allowed_sans_is_forbidden(restricted: Authority, ca: CA) -> None:
    device = enrol_device(restricted, ca)
    names = [USER, "vpn.example.com"]
    token = x5c_token(restricted, device, sans=names)
    refuse(_via_authority, restricted, token, new_csr(USER, names)[2], Forbidden, "vpn.example")


def test_token_ip_outside_allowed_range_is_forbidden(restricted: Authority, ca: CA) -> None:
    device = enrol_device(restricted, ca)
    names = [USER, "192.168.1.1"]
    token = x5c_token(restricted, device, sans=names)
    refuse(_via_authority, restricted, token, new_csr(USER, names)[2], Forbidden, "192.168.1.1")


def test_token_subject_outside_allowed_subjects_is_forbidden(restricted: Authority, ca: CA) -> None:
    device = enrol_device(restricted, ca)
    token = x5c_token(restricted, device, "root.example.com", sans=[USER])
    csr_pem = new_csr("root.example.com", [USER])[2]
    refuse(_via_authority, restricted, token, csr_pem, Forbidden, "root.example.com")


# --- revocation ----------------------------------------------------------------------------------


def test_revoke_with_an_x5c_token_naming_the_serial(authority: Authority, device: Holder) -> None:
    cert = _via_authority(authority, x5c_token(authority, device), CSR_PEM)
    serial = cert.serial_number
    wrong = x5c_token(authority, device, subject=str(serial + 1), audience=f"{BASE}/1.0/revoke")
    with pytest.raises(Unauthorized, match="serial"):
        revoke_json(authority, {"serial": str(serial), "ott": wrong}, None)
    sign_audience = x5c_token(authority, device, subject=str(serial))
    with pytest.raises(Unauthorized, match="audience"):
        revoke_json(authority, {"serial": str(serial), "ott": sign_audience}, None)
    right = x5c_token(authority, device, subject=str(serial), audience=f"{BASE}/1.0/revoke")
    assert revoke_json(authority, {"serial": str(serial), "ott": right}, None) == {"status": "ok"}
    record = authority.stores.certificates.get_certificate(format(serial, "x"))
    assert record is not None and record.status == "revoked"


def test_revoke_token_from_a_foreign_chain_is_unauthorized(
    authority: Authority, device: Holder
) -> None:
    cert = _via_authority(authority, x5c_token(authority, device), CSR_PEM)
    now = authority.clock.now()
    other_root = make_certificate(None, cn="Other Root", now=now, ca=True)
    stranger = make_certificate(other_root, cn="stranger", now=now)
    token = x5c_token(
        authority, stranger, subject=str(cert.serial_number), audience=f"{BASE}/1.0/revoke"
    )
    with pytest.raises(Unauthorized, match="chain"):
        revoke_json(authority, {"serial": str(cert.serial_number), "ott": token}, None)


# --- keys other than P-256 ---------------------------------------------------------------------


def _signing_key(kind: str) -> PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if kind == "P-384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("kind", "alg"),
    [("P-384", "ES384"), ("Ed25519", "EdDSA"), ("RSA", "RS256"), ("RSA", "PS256")],
)
def test_leaf_key_types_sign_with_their_own_algorithm(
    submit: Submit, authority: Authority, kind: str, alg: str
) -> None:
    leaf = agent_leaf(authority, key=_signing_key(kind))
    token = sign_compact(
        claims_for(authority), leaf.key, alg=alg, headers={"x5c": x5c_header(leaf.chain)}
    )
    submit(authority, token, CSR_PEM)


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS384", "PS512"])
def test_rsa_leaf_with_an_algorithm_outside_the_x5c_set_is_unauthorized(
    submit: Submit, authority: Authority, alg: str
) -> None:
    leaf = agent_leaf(authority, key=_signing_key("RSA"))
    token = sign_compact(
        claims_for(authority), leaf.key, alg=alg, headers={"x5c": x5c_header(leaf.chain)}
    )
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "not allowed")
