"""The Azure provisioner's decisions, in process: managed-identity tokens signed here with
an RSA key a stand-in for the host's key cache hands out, and attested documents signed
here as Azure's metadata service signs them (SignedData without signed attributes,
digest algorithm OID sha256WithRSAEncryption, the signer's certificate embedded) by a
``metadata.azure.com`` certificate of a test root and intermediate.

401 for evidence that is forged, expired, for another CA, key, provisioner, tenant or
resource, or that does not chain to a configured root; 403 for a machine the policy does
not admit (subscription, resource group, not a virtual machine, names).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import parse_csr
from engine.errors import (
    BadRequest,
    ConfigurationError,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
)
from engine.jose import PrivateKey, sign_compact
from engine.names import SAN, SANKind
from engine.template import CertificateTemplate
from hosts.testing.keys import StaticRemoteKeys
from plugins.api import (
    Assurance,
    AuthorizeContext,
    ProvisionerEnvironment,
    instance_nonce,
)
from plugins.azure import AzureProvisioner
from plugins.minting import mint_identity_request

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SIGN_URL = "https://ca.example.com:8443/1.0/sign"
OTHER_URL = "https://127.0.0.1:8443/1.0/sign"
AUDIENCE = SIGN_URL + "#azure"
JWKS = "https://login.microsoftonline.com/common/discovery/keys"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RESOURCE = "api://devid-ca"
SUBSCRIPTION = "5f130ffc-0a3e-4795-b691-4f56a12a5547"
VM_ID = "bd8e7443-24a0-41f3-b949-8baf4fd1c573"
MIRID = (
    f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG"
    "/providers/Microsoft.Compute/virtualMachines/web-1"
)
OWN_NAMES = (
    SAN(SANKind.URI, f"azure://{SUBSCRIPTION}/prod-rg/web-1"),
    SAN(SANKind.URI, f"urn:uuid:{VM_ID}"),
)
#: The OID Azure puts where a digest algorithm belongs: sha256WithRSAEncryption.
SHA256_WITH_RSA = "1.2.840.113549.1.1.11"


def document_time(when: datetime) -> str:
    """A time as Azure writes it in an attested document."""
    return when.astimezone(UTC).strftime("%m/%d/%y %H:%M:%S -0000")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TestPKI:
    """A root, an intermediate and a metadata service certificate issued by it."""

    __test__ = False

    def __init__(
        self,
        signer_names: Sequence[str] = ("metadata.azure.com",),
        label: str = "Test",
        now: datetime = NOW,
    ) -> None:
        self.now = now
        self.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root = self._ca(f"{label} Root", self.root_key, None, None)
        self.intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.intermediate = self._ca(
            f"{label} TLS Issuing CA", self.intermediate_key, self.root, self.root_key
        )
        self.signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signer = self.leaf(self.signer_key, signer_names)

    def _ca(
        self,
        name: str,
        key: rsa.RSAPrivateKey,
        issuer: x509.Certificate | None,
        issuer_key: rsa.RSAPrivateKey | None,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer.subject if issuer else _name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=365))
            .not_valid_after(self.now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(issuer_key or key, hashes.SHA256())
        )

    def leaf(
        self,
        key: rsa.RSAPrivateKey,
        names: Sequence[str],
        *,
        not_after: datetime | None = None,
        ekus: Sequence[x509.ObjectIdentifier] = (
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        ca: bool = False,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=30))
            .not_valid_after(not_after or self.now + timedelta(days=300))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
            .sign(self.intermediate_key, hashes.SHA256())
        )


def signed_data(
    content: bytes,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    *,
    certificates: Sequence[x509.Certificate] | None = None,
) -> bytes:
    """A SignedData as Azure makes it: no signed attributes, the digest algorithm named by
    the sha256WithRSAEncryption OID, the signature PKCS #1 v1.5 over the content."""
    signature = key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    issuer_and_serial = cms.IssuerAndSerialNumber(
        {
            "issuer": cms.Certificate.load(certificate.public_bytes(Encoding.DER)).issuer,
            "serial_number": certificate.serial_number,
        }
    )
    embedded = [certificate] if certificates is None else list(certificates)
    info = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": SHA256_WITH_RSA}],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [cms.Certificate.load(c.public_bytes(Encoding.DER)) for c in embedded],
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier({"issuer_and_serial_number": issuer_and_serial}),
                    "digest_algorithm": {"algorithm": SHA256_WITH_RSA},
                    "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
                    "signature": signature,
                }
            ],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": info}).dump())


class Device:
    """A virtual machine's key and its CSR."""

    def __init__(self, common_name: str | None = None, sans: tuple[str, ...] = ()) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
                critical=False,
            )
        request = builder.sign(self.key, hashes.SHA256())
        self.csr = parse_csr(request.public_bytes(Encoding.DER))
        self.csr_pem = request.public_bytes(Encoding.PEM).decode()

    def nonce(self, audience: str = AUDIENCE) -> str:
        spki = self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return instance_nonce(spki, audience)


class Azure:
    """Azure's side: Entra ID's token key and the metadata service's certificate."""

    def __init__(self, keys: StaticRemoteKeys, pki: TestPKI | None = None) -> None:
        self.token_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys.keys["e-1"] = self.token_key.public_key()
        self.pki = pki or TestPKI()

    def access_token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        drop: tuple[str, ...] = (),
        key: PrivateKey | None = None,
        kid: str = "e-1",
        alg: str | None = None,
    ) -> str:
        now = int(NOW.timestamp())
        body: dict[str, Any] = {
            "aud": RESOURCE,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now - 300,
            "nbf": now - 300,
            "exp": now - 300 + 86400,
            "aio": "E2ZgYDi3c+/Tl4/nN9fxkfeX7fcfAA==",
            "appid": "2c6ec2d0-2f13-4e72-8f4b-a3e9bd1f4bd8",
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{TENANT}/",
            "oid": "c30c4c4a-0d8c-4a77-9ab6-79b2a7ab9c2b",
            "rh": "0.AQsAv4j5cvGGr0GRqy180BHbRw.",
            "sub": "c30c4c4a-0d8c-4a77-9ab6-79b2a7ab9c2b",
            "tid": TENANT,
            "uti": "xkYkqVpfm0y2-kbEX1SqAA",
            "ver": "1.0",
            "xms_mirid": MIRID,
        }
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return sign_compact(
            body, key or self.token_key, alg=alg, headers={"kid": kid, "typ": "JWT"}
        )

    def document(self, nonce: Any, **changes: Any) -> dict[str, Any]:
        content: dict[str, Any] = {
            "licenseType": "",
            "nonce": nonce,
            "plan": {"name": "", "product": "", "publisher": ""},
            "sku": "22_04-lts-gen2",
            "subscriptionId": SUBSCRIPTION,
            "timeStamp": {
                "createdOn": document_time(NOW - timedelta(minutes=1)),
                "expiresOn": document_time(NOW - timedelta(minutes=1) + timedelta(hours=6)),
            },
            "vmId": VM_ID,
        }
        content.update(changes)
        return content

    def attested(
        self,
        nonce: Any,
        *,
        content: bytes | None = None,
        key: rsa.RSAPrivateKey | None = None,
        certificate: x509.Certificate | None = None,
        certificates: Sequence[x509.Certificate] | None = None,
        **changes: Any,
    ) -> str:
        """The ``signature`` value of IMDS's attested-data answer."""
        if content is None:
            content = json.dumps(self.document(nonce, **changes), separators=(",", ":")).encode()
        der = signed_data(
            content,
            key or self.pki.signer_key,
            certificate or self.pki.signer,
            certificates=certificates,
        )
        return base64.b64encode(der).decode("ascii")

    def request(
        self,
        device: Device,
        *,
        audience: str = AUDIENCE,
        token: str | None = None,
        attested: str | None = None,
        nonce: str | None = None,
        evidence: dict[str, object] | None = None,
        now: datetime = NOW,
        key: PrivateKey | None = None,
    ) -> str:
        """The identity request a machine sends: token and document, signed by its key."""
        if evidence is None:
            evidence = {
                "access_token": token if token is not None else self.access_token(),
                "attested": attested
                if attested is not None
                else self.attested(nonce or device.nonce(audience)),
            }
        return mint_identity_request(
            key or device.key, audience=audience, cloud="azure", evidence=evidence, now=now
        )


@pytest.fixture
def keys() -> StaticRemoteKeys:
    return StaticRemoteKeys(discovery=False)


@pytest.fixture
def azure(keys: StaticRemoteKeys) -> Azure:
    return Azure(keys)


@pytest.fixture
def data_dir(tmp_path: Path, azure: Azure) -> Path:
    (tmp_path / "roots.pem").write_bytes(azure.pki.root.public_bytes(Encoding.PEM))
    (tmp_path / "intermediates.pem").write_bytes(azure.pki.intermediate.public_bytes(Encoding.PEM))
    return tmp_path


def make(
    keys: StaticRemoteKeys | None, data_dir: Path, name: str = "azure", **options: Any
) -> AzureProvisioner:
    table: dict[str, Any] = {
        "type": "Azure",
        "name": name,
        "tenant_id": TENANT,
        "resource": RESOURCE,
        "roots": ["roots.pem"],
        "intermediates": ["intermediates.pem"],
    }
    table.update(options)
    table = {k: v for k, v in table.items() if v is not None}
    env = ProvisionerEnvironment(
        data_dir=data_dir, issuers=frozenset({"tls", "agent"}), remote_keys=keys
    )
    return AzureProvisioner.from_config(name, table, env)


def ctx(now: datetime = NOW) -> AuthorizeContext:
    return AuthorizeContext(now=now, audiences=frozenset({SIGN_URL, OTHER_URL}))


def sign(prov: AzureProvisioner, request: str, device: Device, now: datetime = NOW) -> Any:
    reading = AzureProvisioner.read_credential(request)
    assert reading is not None
    assert reading.provisioner == prov.name
    authorization = prov.authorize_sign(reading, device.csr, ctx(now))
    for validator in authorization.policy.validators:
        validator.validate(device.csr)
    return authorization


def certificate(authorization: Any) -> CertificateTemplate:
    template = CertificateTemplate(subject=x509.Name([]))
    for modifier in authorization.policy.modifiers:
        template = modifier.modify(template)
    return template


def common_name(template: CertificateTemplate) -> str | None:
    cn = template.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else None


# --- what valid evidence gets -----------------------------------------------------------------


def test_an_admitted_machine_gets_its_own_names(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    auth = sign(make(keys, data_dir), azure.request(device), device)
    template = certificate(auth)
    assert common_name(template) == "web-1"
    assert template.sans == OWN_NAMES
    assert auth.policy.issuer == "tls"
    assert Assurance.CLOUD_INSTANCE in [getattr(m, "level", None) for m in auth.policy.modifiers]
    ekus = next(m.ekus for m in auth.policy.modifiers if hasattr(m, "ekus"))
    assert set(ekus) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert auth.policy.evidence == {
        "method": "azure-instance-identity",
        "tenant": TENANT,
        "subscription": SUBSCRIPTION,
        "resource_group": "prod-rg",
        "vm_name": "web-1",
        "resource_id": MIRID,
        "vm_id": VM_ID,
        "attested_document": True,
        "token": f"instance:{VM_ID}",
    }
    assert keys.asked == [(JWKS, "e-1", "RS256")]
    assert auth.policy.durations.default == timedelta(hours=24)


def test_every_audience_of_this_ca_is_accepted(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    sign(make(keys, data_dir), azure.request(device, audience=OTHER_URL + "#azure"), device)


def test_the_keywords_of_the_resource_id_are_read_in_any_case(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    mirid = (
        f"/SUBSCRIPTIONS/{SUBSCRIPTION.upper()}/resourceGroups/Prod-RG"
        "/providers/microsoft.compute/VIRTUALMACHINES/Web-1"
    )
    device = Device()
    token = azure.access_token({"xms_mirid": mirid})
    template = certificate(sign(make(keys, data_dir), azure.request(device, token=token), device))
    assert common_name(template) == "Web-1"
    assert template.sans[0] == SAN(SANKind.URI, f"azure://{SUBSCRIPTION}/prod-rg/Web-1")


def test_trust_on_first_use_remembers_the_machine(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir)
    device = Device()
    auth = sign(prov, azure.request(device), device)
    assert auth.token.provisioner == "azure"
    assert auth.token.token_id == f"instance:{VM_ID}"
    assert auth.token.expires_at > NOW + timedelta(days=365 * 99)
    # A second request of the same machine (another key, another document) is recorded
    # under the same use: the host refuses it as used.
    other = Device()
    assert sign(prov, azure.request(other), other).token.token_id == auth.token.token_id


def test_without_trust_on_first_use_each_document_is_used_once(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    attested = azure.attested(device.nonce())
    content = json.dumps(azure.document(device.nonce()), separators=(",", ":")).encode()
    auth = sign(
        make(keys, data_dir, trust_on_first_use=False),
        azure.request(device, attested=attested),
        device,
    )
    assert auth.token.token_id == "sha256:" + hashlib.sha256(content).hexdigest()
    assert auth.token.expires_at == NOW - timedelta(minutes=1) + timedelta(hours=6, minutes=1)


def test_without_the_attested_document_the_token_names_the_machine(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir, attested_document=False)
    device = Device()
    token = azure.access_token()
    auth = sign(prov, azure.request(device, evidence={"access_token": token}), device)
    assert certificate(auth).sans == OWN_NAMES[:1]
    assert auth.token.token_id == "instance:" + MIRID.lower()
    assert auth.policy.evidence["attested_document"] is False
    assert "vm_id" not in auth.policy.evidence
    once = make(keys, data_dir, attested_document=False, trust_on_first_use=False)
    auth = sign(once, azure.request(device, evidence={"access_token": token}), device)
    assert auth.token.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert auth.token.expires_at == NOW - timedelta(seconds=300) + timedelta(hours=24, minutes=1)


def test_without_the_attested_document_a_document_sent_is_not_read(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir, attested_document=False)
    device = Device()
    evidence: dict[str, object] = {"access_token": azure.access_token(), "attested": "junk"}
    sign(prov, azure.request(device, evidence=evidence), device)


def test_a_csr_may_ask_for_some_of_the_machines_names(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device("web-1", (f"urn:uuid:{VM_ID}",))
    assert certificate(sign(make(keys, data_dir), azure.request(device), device)).sans == OWN_NAMES


def test_allowed_names_admit_extra_names(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir, allowed_names=["*.svc.example.com"])
    device = Device("api.svc.example.com", ("api.svc.example.com",))
    template = certificate(sign(prov, azure.request(device), device))
    assert template.sans == (*OWN_NAMES, SAN(SANKind.DNS, "api.svc.example.com"))
    assert common_name(template) == "web-1"
    stranger = Device(None, ("www.example.org",))
    with pytest.raises(Forbidden, match=r"www\.example\.org"):
        sign(prov, azure.request(stranger), stranger)


def test_names_outside_the_policy_are_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir)
    device = Device(None, ("api.svc.example.com",))
    with pytest.raises(Forbidden, match=r"may not have: api\.svc\.example\.com"):
        sign(prov, azure.request(device), device)
    device = Device(None, ("urn:uuid:00000000-0000-0000-0000-000000000000",))
    with pytest.raises(Forbidden, match="00000000-0000"):
        sign(prov, azure.request(device), device)
    device = Device("root")
    with pytest.raises(Forbidden, match="common name 'root'"):
        sign(prov, azure.request(device), device)


# --- refusals: the identity request (401) -----------------------------------------------------


def test_a_request_not_signed_by_the_csr_key_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthorized, match="signature"):
        sign(make(keys, data_dir), azure.request(device, key=other), device)


def test_an_expired_request_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    request = azure.request(device, now=NOW - timedelta(minutes=10))
    with pytest.raises(Unauthorized, match="expired"):
        sign(make(keys, data_dir), request, device)


def test_a_request_for_another_provisioner_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    request = azure.request(device, audience=SIGN_URL + "#other")
    reading = AzureProvisioner.read_credential(request)
    assert reading is not None and reading.provisioner == "other"
    with pytest.raises(Unauthorized, match="audience"):
        make(keys, data_dir).authorize_sign(reading, device.csr, ctx())


@pytest.mark.parametrize(
    ("evidence", "match"),
    [
        ({}, "no managed-identity access_token"),
        ({"access_token": 5}, "no managed-identity access_token"),
        ({"access_token": "not.a.token"}, "not JSON"),
    ],
)
def test_evidence_without_a_usable_token_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, evidence: dict[str, object], match: str
) -> None:
    device = Device()
    with pytest.raises((Unauthorized, BadRequest), match=match):
        sign(make(keys, data_dir), azure.request(device, evidence=evidence), device)


# --- refusals: the managed-identity token (401) -----------------------------------------------


def test_a_forged_token_is_refused(keys: StaticRemoteKeys, azure: Azure, data_dir: Path) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    device = Device()
    with pytest.raises(Unauthorized, match="signature does not verify"):
        sign(
            make(keys, data_dir),
            azure.request(device, token=azure.access_token(key=forger)),
            device,
        )
    token = azure.access_token(key=forger, kid="e-9")
    with pytest.raises(Unauthorized, match="not among the signing keys"):
        sign(make(keys, data_dir), azure.request(device, token=token), device)


def test_only_rs256_is_accepted(keys: StaticRemoteKeys, azure: Azure, data_dir: Path) -> None:
    device = Device()
    with pytest.raises(
        Unauthorized, match=r"'RS384' is not one provisioner '\w+' accepts \(RS256\)"
    ):
        sign(
            make(keys, data_dir),
            azure.request(device, token=azure.access_token(alg="RS384")),
            device,
        )


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}, "issuer"),
        ({"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0"}, "issuer"),
        ({"aud": "https://management.azure.com/"}, "audience"),
        ({"aud": [RESOURCE]}, "audience"),
        ({"tid": "00000000-0000-0000-0000-000000000000"}, "tenant"),
        ({"tid": None}, "tenant"),
    ],
)
def test_a_token_for_another_tenant_resource_or_issuer_is_refused(
    keys: StaticRemoteKeys,
    azure: Azure,
    data_dir: Path,
    claims: dict[str, Any],
    match: str,
) -> None:
    device = Device()
    token = azure.access_token(claims)
    with pytest.raises(Unauthorized, match=match):
        sign(make(keys, data_dir), azure.request(device, token=token), device)


def test_the_tenant_may_be_written_in_capitals(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    sign(make(keys, data_dir, tenant_id=TENANT.upper()), azure.request(device), device)


def test_a_configured_token_issuer_replaces_the_default(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    issuer = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    prov = make(keys, data_dir, token_issuer=issuer)
    device = Device()
    sign(prov, azure.request(device, token=azure.access_token({"iss": issuer})), device)
    with pytest.raises(Unauthorized, match="issuer"):
        sign(prov, azure.request(device), device)


def test_expired_future_and_long_lived_tokens_are_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir)
    device = Device()
    now = int(NOW.timestamp())
    cases = [
        ({"exp": now - 120}, "expired"),
        ({"iat": now + 600, "nbf": now + 600, "exp": now + 3600}, "future|not yet valid"),
        ({"iat": now - 10, "nbf": now - 10, "exp": now + 26 * 3600}, "lifetime"),
    ]
    for claims, match in cases:
        with pytest.raises(Unauthorized, match=match):
            sign(prov, azure.request(device, token=azure.access_token(claims)), device)
    with pytest.raises(Unauthorized, match="no exp"):
        sign(prov, azure.request(device, token=azure.access_token(drop=("exp",))), device)


def test_a_token_without_a_resource_id_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    token = azure.access_token(drop=("xms_mirid",))
    with pytest.raises(Unauthorized, match="no xms_mirid"):
        sign(make(keys, data_dir), azure.request(device, token=token), device)


@pytest.mark.parametrize(
    "mirid",
    [
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.ManagedIdentity/userAssignedIdentities/shared-identity",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.Compute/virtualMachineScaleSets/web",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.Compute/virtualMachines/web-1/extensions/x",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.Compute/virtualMachines/web-1\n",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.Compute/virtualMachines/web 1",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG/providers"
        "/Microsoft.Compute/virtualMachines/web-1-",
        "/subscriptions/not-a-guid-at-all-but-36-characters-x/resourcegroups/Prod-RG"
        "/providers/Microsoft.Compute/virtualMachines/web-1",
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/Prod-RG./providers"
        "/Microsoft.Compute/virtualMachines/web-1",
    ],
)
def test_a_token_of_anything_but_a_virtual_machine_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, mirid: str
) -> None:
    device = Device()
    token = azure.access_token({"xms_mirid": mirid})
    with pytest.raises(Forbidden, match="not a virtual machine's system-assigned identity"):
        sign(make(keys, data_dir), azure.request(device, token=token), device)


def test_entra_keys_unreachable_is_a_503(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    keys.down = True
    with pytest.raises(ServiceUnavailable):
        sign(make(keys, data_dir), azure.request(device), device)
    with pytest.raises(ServiceUnavailable):
        sign(make(None, data_dir), azure.request(device), device)


# --- refusals: the attested document (401) ----------------------------------------------------


def test_a_document_for_another_key_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device, other = Device(), Device()
    with pytest.raises(Unauthorized, match=r"nonce .* is not .* this CSR's key"):
        sign(make(keys, data_dir), azure.request(device, nonce=other.nonce()), device)


def test_a_document_for_another_provisioner_or_ca_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    for audience in (SIGN_URL + "#other", OTHER_URL + "#azure", "https://x.example/1.0/sign#azure"):
        request = azure.request(device, nonce=device.nonce(audience))
        with pytest.raises(Unauthorized, match="nonce"):
            sign(make(keys, data_dir), request, device)


def test_the_real_documents_nonce_form_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    with pytest.raises(Unauthorized, match="'20220419-072721'"):
        sign(make(keys, data_dir), azure.request(device, nonce="20220419-072721"), device)


def test_an_expired_document_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    stamp = {
        "createdOn": document_time(NOW - timedelta(hours=7)),
        "expiresOn": document_time(NOW - timedelta(hours=1)),
    }
    attested = azure.attested(device.nonce(), timeStamp=stamp)
    with pytest.raises(Unauthorized, match="expired at"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)
    # The request itself is fresh; the document expired within the leeway still counts.
    stamp = {
        "createdOn": document_time(NOW - timedelta(hours=6)),
        "expiresOn": document_time(NOW - timedelta(seconds=30)),
    }
    attested = azure.attested(device.nonce(), timeStamp=stamp)
    sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    ("stamp", "match"),
    [
        ({"createdOn": "x", "expiresOn": "x"}, "createdOn is not a time"),
        (
            {
                "createdOn": document_time(NOW + timedelta(hours=1)),
                "expiresOn": document_time(NOW + timedelta(hours=7)),
            },
            "made in the future",
        ),
        (
            {"createdOn": document_time(NOW), "expiresOn": document_time(NOW)},
            "expires before",
        ),
        (
            {"createdOn": "13/40/26 25:61:61 -0000", "expiresOn": document_time(NOW)},
            "createdOn is not a time",
        ),
        ({"createdOn": document_time(NOW)}, "expiresOn is not a time"),
        (
            {"createdOn": NOW.isoformat(), "expiresOn": document_time(NOW)},
            "createdOn is not a time",
        ),
        ("now", "no timeStamp"),
    ],
)
def test_a_document_with_wrong_times_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, stamp: Any, match: str
) -> None:
    device = Device()
    attested = azure.attested(device.nonce(), timeStamp=stamp)
    with pytest.raises(Unauthorized, match=match):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


def test_a_document_of_another_subscription_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    attested = azure.attested(device.nonce(), subscriptionId="0afbfffa-5df9-4a3b-987e-fe7577624272")
    with pytest.raises(Unauthorized, match=r"subscription .* is not the access token's"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)
    # The same subscription in capitals is the same subscription.
    attested = azure.attested(device.nonce(), subscriptionId=SUBSCRIPTION.upper())
    sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"vmId": "not-a-guid"}, "vmId is not a GUID"),
        ({"vmId": None}, "vmId is not a GUID"),
        ({"subscriptionId": 5}, "subscriptionId is not a GUID"),
        ({"nonce": 1234567890}, "no nonce"),
        ({"nonce": "9" * 65}, "no nonce"),
    ],
)
def test_a_document_missing_a_fact_is_refused(
    keys: StaticRemoteKeys,
    azure: Azure,
    data_dir: Path,
    changes: dict[str, Any],
    match: str,
) -> None:
    device = Device()
    nonce = changes.pop("nonce", device.nonce())
    attested = azure.attested(nonce, **changes)
    with pytest.raises(Unauthorized, match=match):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"\xff\xfe", "not JSON"), (b"[1, 2]", "not a JSON object"), (b"[" * 5000, "not JSON")],
)
def test_a_document_that_is_no_json_object_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, content: bytes, match: str
) -> None:
    device = Device()
    attested = azure.attested(device.nonce(), content=content)
    with pytest.raises(Unauthorized, match=match):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    "names",
    [
        ("metadata.example.com",),
        ("metadata.azure.com.evil.example",),
        ("evil-metadata.azure.com",),
        ("a.b.metadata.azure.com",),
        ("management.azure.com",),
    ],
)
def test_a_signer_that_is_not_the_metadata_service_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, names: tuple[str, ...]
) -> None:
    device = Device()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = azure.pki.leaf(key, names)
    attested = azure.attested(device.nonce(), key=key, certificate=cert)
    with pytest.raises(Unauthorized, match="is not Azure's metadata service"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    "names",
    [
        ("metadata.azure.us",),
        ("usgovvirginia.metadata.azure.us",),
        ("metadata.azure.cn",),
        ("metadata.microsoftazure.de",),
        ("chinanorth.metadata.azure.cn",),
        ("WestEurope.Metadata.Azure.COM",),
    ],
)
def test_every_metadata_service_name_signs(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, names: tuple[str, ...]
) -> None:
    device = Device()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = azure.pki.leaf(key, names)
    attested = azure.attested(device.nonce(), key=key, certificate=cert)
    sign(make(keys, data_dir), azure.request(device, attested=attested), device)


def test_a_signer_without_the_server_purpose_or_a_ca_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = azure.pki.leaf(key, ("metadata.azure.com",), ekus=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    attested = azure.attested(device.nonce(), key=key, certificate=cert)
    with pytest.raises(Unauthorized, match="not a TLS server certificate"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)
    cert = azure.pki.leaf(key, ("metadata.azure.com",), ca=True)
    attested = azure.attested(device.nonce(), key=key, certificate=cert)
    with pytest.raises(Unauthorized, match="is a CA certificate"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


def test_a_document_chaining_to_an_unknown_root_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    stranger = TestPKI(label="Other")
    attested = azure.attested(device.nonce(), key=stranger.signer_key, certificate=stranger.signer)
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)
    # Embedding the stranger's intermediate does not help: its root is not trusted.
    attested = azure.attested(
        device.nonce(),
        key=stranger.signer_key,
        certificate=stranger.signer,
        certificates=[stranger.signer, stranger.intermediate],
    )
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)
    # Nor do the bundled roots trust the test's.
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(make(keys, data_dir, roots=None), azure.request(device), device)


def test_the_intermediate_may_come_from_config_or_the_document(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    without = make(keys, data_dir, intermediates=None)
    with pytest.raises(Unauthorized, match="add the current ones"):
        sign(without, azure.request(device), device)
    attested = azure.attested(
        device.nonce(), certificates=[azure.pki.signer, azure.pki.intermediate]
    )
    sign(without, azure.request(device, attested=attested), device)


def test_an_expired_signer_certificate_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = azure.pki.leaf(key, ("metadata.azure.com",), not_after=NOW - timedelta(seconds=1))
    attested = azure.attested(device.nonce(), key=key, certificate=cert)
    with pytest.raises(Unauthorized, match="signer certificate is not valid now"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


def test_a_document_signed_by_another_key_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attested = azure.attested(device.nonce(), key=forger)
    with pytest.raises(Unauthorized, match="signature does not verify"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


def test_a_document_without_its_signer_certificate_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    attested = azure.attested(device.nonce(), certificates=[])
    with pytest.raises(Unauthorized, match="does not embed its signer's certificate"):
        sign(make(keys, data_dir), azure.request(device, attested=attested), device)


@pytest.mark.parametrize(
    ("attested", "error", "match"),
    [
        (None, Unauthorized, "no attested document"),
        ("", Unauthorized, "no attested document"),
        ("***", Unauthorized, "not base64"),
        (base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), BadRequest, "malformed"),
    ],
)
def test_an_unreadable_document_is_refused(
    keys: StaticRemoteKeys,
    azure: Azure,
    data_dir: Path,
    attested: str | None,
    error: type[Exception],
    match: str,
) -> None:
    device = Device()
    evidence: dict[str, object] = {"access_token": azure.access_token()}
    if attested is not None:
        evidence["attested"] = attested
    with pytest.raises(error, match=match):
        sign(make(keys, data_dir), azure.request(device, evidence=evidence), device)


def test_the_document_may_be_sent_with_line_breaks(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    text = azure.attested(device.nonce())
    wrapped = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    sign(make(keys, data_dir), azure.request(device, attested=wrapped), device)


# --- refusals: the machine (403) --------------------------------------------------------------


def test_subscriptions_admit_only_their_machines(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    sign(make(keys, data_dir, subscriptions=[SUBSCRIPTION.upper()]), azure.request(device), device)
    prov = make(keys, data_dir, subscriptions=["0afbfffa-5df9-4a3b-987e-fe7577624272"])
    with pytest.raises(Forbidden, match=f"subscription {SUBSCRIPTION} is not one"):
        sign(prov, azure.request(device), device)


def test_resource_groups_admit_only_their_machines(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    device = Device()
    sign(make(keys, data_dir, resource_groups=["prod-rg", "other"]), azure.request(device), device)
    with pytest.raises(Forbidden, match="resource group 'Prod-RG' is not one"):
        sign(make(keys, data_dir, resource_groups=["staging"]), azure.request(device), device)


# --- renewal, configuration, reading -----------------------------------------------------------


def test_renewal_is_on_unless_turned_off(keys: StaticRemoteKeys, data_dir: Path) -> None:
    make(keys, data_dir).authorize_renew(None)  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="does not renew"):
        make(keys, data_dir, allow_renewal=False).authorize_renew(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tenant_id": None}, "missing required option 'tenant_id'"),
        ({"tenant_id": "contoso.onmicrosoft.com"}, "tenant_id must be the tenant's GUID"),
        ({"resource": None}, "missing required option 'resource'"),
        ({"resource": ""}, "'resource' must be a non-empty string"),
        ({"subscriptions": "x"}, "list of non-empty strings"),
        ({"subscriptions": ["prod"]}, "'prod' is not a GUID"),
        ({"resource_groups": [""]}, "list of non-empty strings"),
        ({"attested_document": "yes"}, "true or false"),
        ({"roots": ["missing.pem"]}, "cannot read"),
        ({"roots": []}, "roots must list"),
        ({"roots": ["notes.txt"]}, "holds no PEM certificates"),
        ({"roots": ["leaf.pem"]}, "is not a CA certificate"),
        ({"intermediates": ["leaf.pem"]}, "is not a CA certificate"),
        ({"intermediates": "intermediates.pem"}, "list of non-empty strings"),
        ({"jwks_url": "http://login.microsoftonline.com/common/discovery/keys"}, "not HTTPS"),
        ({"token_issuer": ""}, "token_issuer"),
        ({"key_refresh_interval": "2h"}, "between 1s and 1h"),
        ({"durations": {"max": "31d"}}, "at most 30d"),
        ({"allowed_names": "*.example.com"}, "allowed_names"),
        ({"trust_on_first_use": "yes"}, "true or false"),
        ({"issuer": "nope"}, "issuer 'nope'"),
        ({"colour": "blue"}, "unknown option"),
    ],
)
def test_bad_tables_are_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path, options: dict[str, Any], match: str
) -> None:
    (data_dir / "notes.txt").write_text("no certificates here\n")
    (data_dir / "leaf.pem").write_bytes(azure.pki.signer.public_bytes(Encoding.PEM))
    with pytest.raises(ConfigurationError, match=match):
        make(keys, data_dir, **options)


def test_a_name_with_a_fragment_sign_is_refused(keys: StaticRemoteKeys, data_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="may not contain '#'"):
        make(keys, data_dir, name="a#b")


def test_the_bundled_roots_are_the_default(keys: StaticRemoteKeys, data_dir: Path) -> None:
    prov = make(keys, data_dir, roots=None, intermediates=None)
    names = sorted(r.subject.rfc4514_string() for r in prov.roots)
    assert names == [
        "CN=Baltimore CyberTrust Root,OU=CyberTrust,O=Baltimore,C=IE",
        "CN=DigiCert Global Root G2,OU=www.digicert.com,O=DigiCert Inc,C=US",
    ]
    assert len(prov.intermediates) == 2
    assert prov.token_issuer == f"https://sts.windows.net/{TENANT}/"
    assert prov.jwks_url == JWKS


def test_the_public_view_shows_what_a_machine_asks_for(
    keys: StaticRemoteKeys, data_dir: Path
) -> None:
    view = make(
        keys, data_dir, subscriptions=[SUBSCRIPTION], resource_groups=["prod-rg"]
    ).public_view()
    assert view == {
        "type": "Azure",
        "name": "azure",
        "issuer": "tls",
        "cloud": "azure",
        "resource": RESOURCE,
        "attestedDocument": True,
        "durations": view["durations"],
    }
    assert view["durations"]["default"] == "1d"
    assert make(keys, data_dir, attested_document=False).public_view()["attestedDocument"] is False


def test_reading_skips_other_tokens(azure: Azure) -> None:
    assert AzureProvisioner.read_credential("not a token") is None
    # A managed-identity token alone is not an identity request.
    assert AzureProvisioner.read_credential(azure.access_token()) is None
    device = Device()
    aws = mint_identity_request(
        device.key, audience=SIGN_URL + "#aws", cloud="aws", evidence={"rsa2048": "x"}, now=NOW
    )
    assert AzureProvisioner.read_credential(aws) is None
    reading = AzureProvisioner.read_credential(azure.request(device))
    assert reading is not None and reading.provisioner == "azure"


def test_an_intermediate_of_the_same_name_under_another_root_is_refused(
    keys: StaticRemoteKeys, azure: Azure, data_dir: Path
) -> None:
    prov = make(keys, data_dir, intermediates=None)
    device = Device()
    real = [azure.pki.signer, azure.pki.intermediate]
    sign(
        prov,
        azure.request(device, attested=azure.attested(device.nonce(), certificates=real)),
        device,
    )
    # An impostor names itself as the real intermediate and its root as the real root,
    # and certifies a metadata.azure.com key of its own: after the real chain verified
    # (and its link to the root is remembered), the impostor's still does not.
    impostor = TestPKI()
    impostor.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor.root = impostor._ca(
        azure.pki.root.subject.rfc4514_string()[3:], impostor.root_key, None, None
    )
    impostor.intermediate = impostor._ca(
        azure.pki.intermediate.subject.rfc4514_string()[3:],
        impostor.intermediate_key,
        impostor.root,
        impostor.root_key,
    )
    impostor.signer = impostor.leaf(impostor.signer_key, ("metadata.azure.com",))
    attested = azure.attested(
        device.nonce(),
        key=impostor.signer_key,
        certificate=impostor.signer,
        certificates=[impostor.signer, impostor.intermediate],
    )
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(prov, azure.request(device, attested=attested), device)
