"""The AWS provisioner's decisions, in process: AWS's real instance identity documents
(tests/vectors/cloud/aws) checked with the bundled certificates, and documents signed
here in all three forms with the tests' own keys, given to the provisioner through
``certificates.*`` files, each wrapped in an instance identity request signed by the
CSR's key.

401 for evidence or a request that is forged, malformed, for another CA or provisioner,
expired, not signed by the CSR's key, in a form not accepted or with no certificate for
its region; 403 for a genuine document of an instance the policy does not admit
(account, region, age, names).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import CSRInfo, parse_csr
from engine.errors import ConfigurationError, Forbidden, Unauthorized
from engine.jose import PrivateKey, sign_compact
from engine.names import SAN, SANKind
from engine.pipeline import Issuer, SignRequest, prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from engine.signer import SoftwareSigner
from engine.template import CertificateTemplate
from plugins.api import (
    Assurance,
    Authorization,
    AuthorizeContext,
    Credential,
    ProvisionerEnvironment,
)
from plugins.aws import AWSProvisioner, read_region_certificates
from plugins.aws.provisioner import Evidence, bundled_certificates
from plugins.gcp import GCPProvisioner
from plugins.minting import mint_identity_request
from tests.plugins.test_aws_signed_data import key_carrier, sign_cms
from tests.vectors_path import VECTORS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SIGN_URL = "https://ca.example/1.0/sign"
AUDIENCE = SIGN_URL + "#aws"
VECTOR_DIR = VECTORS / "cloud" / "aws"
REAL = json.loads((VECTOR_DIR / "instance_identity_us-east-1.json").read_text())
REAL_ACCOUNT = "628783029487"
REAL_INSTANCE = "i-076e9b91f7c420782"
PKCS7_ACCOUNT = "121659014334"
ACCOUNT = "123456789012"
INSTANCE = "i-0abc123def4567890"
REGION = "eu-west-1"
LAUNCHED = NOW - timedelta(minutes=10)
OWN_NAMES = (
    SAN(SANKind.DNS, "ip-10-1-2-3.eu-west-1.compute.internal"),
    SAN(SANKind.IP, "10.1.2.3"),
    SAN(SANKind.URI, f"aws://{ACCOUNT}/{REGION}/{INSTANCE}"),
)


def _issuer() -> Issuer:
    """A TLS CA valid from 2010 to 2040 (the real PKCS7 document is from 2016)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS Test Issuing CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2010, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(name="tls", certificate=certificate, signer=SoftwareSigner(key))


ISSUER = _issuer()


def pem_base64(der: bytes) -> str:
    """Base64 broken into lines, as the metadata service serves its values."""
    text = base64.b64encode(der).decode()
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


def real_pkcs7() -> str:
    """The base64 of the real PKCS7 vector, without its PEM armour."""
    lines = (VECTOR_DIR / "pkcs7_us-east-1.pem").read_text().splitlines()
    end = lines.index("-----END PKCS7-----")
    return "\n".join(lines[1:end])


class AWS:
    """AWS's side, with the tests' own keys: one RSA and one DSA key per region,
    documents as the metadata service serves them, and signatures in every form."""

    REGIONS = (REGION, "us-east-1", "ap-southeast-2")

    def __init__(self) -> None:
        self.rsa = {
            r: rsa.generate_private_key(public_exponent=65537, key_size=2048) for r in self.REGIONS
        }
        self.dsa = {r: dsa.generate_private_key(key_size=2048) for r in self.REGIONS}

    def certificate_file(
        self, directory: Path, form: str, regions: tuple[str, ...] = REGIONS
    ) -> str:
        """A ``certificates.<form>`` file in the bundled format; its name in *directory*."""
        keys: Mapping[str, Any] = self.dsa if form == "pkcs7" else self.rsa
        lines = ["# the tests' own AWS keys", ""]
        for region in regions:
            pem = key_carrier(keys[region], region).public_bytes(Encoding.PEM).decode()
            lines += [f"# certificate for {region}", pem]
        name = f"aws-{form}.pem"
        (directory / name).write_text("\n".join(lines))
        return name

    @staticmethod
    def document(**changes: Any) -> str:
        facts: dict[str, Any] = {
            "accountId": ACCOUNT,
            "architecture": "x86_64",
            "availabilityZone": REGION + "b",
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": "ami-0c02fb55956c7d316",
            "instanceId": INSTANCE,
            "instanceType": "t3.micro",
            "kernelId": None,
            "pendingTime": LAUNCHED.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "privateIp": "10.1.2.3",
            "ramdiskId": None,
            "region": REGION,
            "version": "2017-09-30",
        }
        facts.update(changes)
        facts = {k: v for k, v in facts.items() if v is not ...}
        return json.dumps(facts, indent=2, separators=(",", " : "))

    def evidence(
        self, form: str, document: str | None = None, *, region: str | None = None
    ) -> dict[str, Any]:
        """The ``aws`` member for *document* in *form*, signed with the keys of *region*
        (the document's own by default)."""
        text = document if document is not None else self.document()
        where = region or json.loads(text)["region"]
        data = text.encode()
        if form == "signature":
            signature = self.rsa[where].sign(data, padding.PKCS1v15(), hashes.SHA256())
            return {"document": text, "signature": pem_base64(signature)}
        if form == "rsa2048":
            key: Any = self.rsa[where]
            der = sign_cms(data, key, key_carrier(key, where), digest="sha256")
        else:
            key = self.dsa[where]
            der = sign_cms(data, key, key_carrier(key, where), digest="sha1", indefinite=True)
        return {form: pem_base64(der)}


@pytest.fixture(scope="module")
def aws() -> AWS:
    return AWS()


@pytest.fixture(scope="module")
def data_dir(aws: AWS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("aws-data")
    for form in ("signature", "rsa2048", "pkcs7"):
        aws.certificate_file(directory, form)
    return directory


OWN_CERTIFICATES = {f: f"aws-{f}.pem" for f in ("signature", "rsa2048", "pkcs7")}


def make(data_dir: Path | None = None, **options: Any) -> AWSProvisioner:
    table: dict[str, Any] = {"type": "AWS", "name": "aws", "accounts": [ACCOUNT]}
    if data_dir is not None:
        table["certificates"] = dict(OWN_CERTIFICATES)
    table.update(options)
    env = ProvisionerEnvironment(
        data_dir=data_dir or Path("unused-data-dir"), issuers=frozenset({"tls", "agent"})
    )
    return AWSProvisioner.from_config("aws", table, env)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_for(key: PrivateKey, common_name: str | None = None, sans: tuple[str, ...] = ()) -> CSRInfo:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
            critical=False,
        )
    return parse_csr(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER))  # type: ignore[arg-type]


def ctx(now: datetime = NOW) -> AuthorizeContext:
    return AuthorizeContext(now=now, audiences=frozenset({SIGN_URL}))


def request(
    evidence: Mapping[str, Any],
    key: PrivateKey | None = None,
    *,
    audience: str = AUDIENCE,
    now: datetime = NOW,
) -> tuple[str, PrivateKey]:
    """An identity request carrying *evidence*, signed by *key* (a fresh one by default)."""
    key = key or new_key()
    token = mint_identity_request(
        key, audience=audience, cloud="aws", evidence=dict(evidence), now=now
    )
    return token, key


def sign(
    prov: AWSProvisioner,
    evidence: Mapping[str, Any],
    *,
    csr: CSRInfo | None = None,
    key: PrivateKey | None = None,
    now: datetime = NOW,
    audience: str = AUDIENCE,
) -> Authorization:
    """What *prov* decides for a request with *evidence*, through the signing pipeline
    (validators, modifiers and the certificate signed by a test CA)."""
    token, key = request(evidence, key, audience=audience, now=now)
    # Whatever the request addresses (read_credential reads only a fragment's).
    reading = AWSProvisioner.read_credential(token)
    jws = reading.reading if reading is not None else None
    credential = Credential(text=token, provisioner=prov.name, reading=jws)
    info = csr if csr is not None else csr_for(key)
    authorization = prov.authorize_sign(credential, info, ctx(now))
    prepared = prepare_certificate(
        SignRequest(csr=info), authorization.policy, ISSUER, FrozenClock(now)
    )
    prepared.sign(CountingRandom(b"aws"))
    return authorization


def certificate(authorization: Authorization) -> CertificateTemplate:
    template = CertificateTemplate(subject=x509.Name([]))
    for modifier in authorization.policy.modifiers:
        template = modifier.modify(template)
    return template


def common_name(template: CertificateTemplate) -> str | None:
    cn = template.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else None


def real_evidence(**changes: str) -> dict[str, Any]:
    return {"document": REAL["document"], "signature": REAL["signature"], **changes}


# --- AWS's real documents, the bundled certificates ---------------------------------------------


def test_the_bundled_signature_certificates_are_the_vectors() -> None:
    bundled = Path(__file__).parents[2] / "plugins" / "aws" / "certificates" / "signature.pem"
    assert bundled.read_bytes() == (VECTOR_DIR / "aws_certificates.pem").read_bytes()
    assert len(bundled_certificates("signature")) == 33
    assert len(bundled_certificates("rsa2048")) == 31
    assert len(bundled_certificates("pkcs7")) == 31
    assert all(
        isinstance(k, rsa.RSAPublicKey) and k.key_size == 2048
        for keys in bundled_certificates("rsa2048").values()
        for k in keys
    )


def test_a_real_document_is_accepted_end_to_end() -> None:
    prov = make(accounts=[REAL_ACCOUNT])
    auth = sign(prov, real_evidence())
    template = certificate(auth)
    assert common_name(template) == REAL_INSTANCE
    assert template.sans == (
        SAN(SANKind.DNS, "ip-172-31-84-238.ec2.internal"),
        SAN(SANKind.IP, "172.31.84.238"),
        SAN(SANKind.URI, f"aws://{REAL_ACCOUNT}/us-east-1/{REAL_INSTANCE}"),
    )
    assert auth.policy.issuer == "tls"
    assert Assurance.CLOUD_INSTANCE in [getattr(m, "level", None) for m in auth.policy.modifiers]
    ekus = next(m.ekus for m in auth.policy.modifiers if hasattr(m, "ekus"))
    assert set(ekus) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert auth.policy.evidence == {
        "method": "aws-instance-identity",
        "form": "signature",
        "account": REAL_ACCOUNT,
        "region": "us-east-1",
        "instance_id": REAL_INSTANCE,
        "private_ip": "172.31.84.238",
        "pending_time": "2022-03-25T20:07:16+00:00",
        "availability_zone": "us-east-1b",
        "instance_type": "t2.micro",
        "image_id": "ami-0c02fb55956c7d316",
        "token": "instance:" + REAL_INSTANCE,
    }
    assert auth.token.token_id == "instance:" + REAL_INSTANCE
    assert auth.token.expires_at > NOW + timedelta(days=365 * 99)
    assert auth.policy.durations.default == timedelta(hours=24)


def test_a_tampered_real_document_is_refused() -> None:
    prov = make(accounts=[REAL_ACCOUNT])
    changed = REAL["document"].replace("t2.micro", "t2.large")
    with pytest.raises(Unauthorized, match="signature over the document does not verify"):
        sign(prov, real_evidence(document=changed))
    signature = REAL["signature"]
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, real_evidence(signature=flipped))
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, real_evidence(document=REAL["document"] + "\n"))


def test_a_real_document_does_not_verify_with_another_regions_key(tmp_path: Path) -> None:
    # ap-east-1's certificate (a key of its own) given as us-east-1's.
    text = (VECTOR_DIR / "aws_certificates.pem").read_text()
    start = text.index("# certificate for ap-east-1")
    pem = text[
        text.index("-----BEGIN", start) : text.index("-----END CERTIFICATE-----", start) + 25
    ]
    (tmp_path / "wrong.pem").write_text(f"# certificate for us-east-1\n{pem}\n")
    prov = make(tmp_path, accounts=[REAL_ACCOUNT], certificates={"signature": "wrong.pem"})
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, real_evidence())


def test_a_real_pkcs7_signature_is_accepted_when_the_form_is_enabled() -> None:
    prov = make(accounts=[PKCS7_ACCOUNT], forms=["pkcs7"])
    auth = sign(prov, {"pkcs7": real_pkcs7()}, now=datetime(2016, 4, 8, 4, tzinfo=UTC))
    assert common_name(certificate(auth)) == "i-f79fe56c"
    assert auth.policy.evidence["form"] == "pkcs7"
    assert auth.policy.evidence["region"] == "us-east-1"
    assert certificate(auth).sans[0] == SAN(SANKind.DNS, "ip-172-30-0-252.ec2.internal")
    with pytest.raises(Unauthorized, match="does not accept the pkcs7 form"):
        sign(make(accounts=[PKCS7_ACCOUNT]), {"pkcs7": real_pkcs7()})


def test_the_real_pkcs7_document_member_must_be_the_signed_one() -> None:
    prov = make(accounts=[PKCS7_ACCOUNT], forms=["pkcs7"])
    when = datetime(2016, 4, 8, 4, tzinfo=UTC)
    der = base64.b64decode("".join(real_pkcs7().split()))
    start = der.index(b'{\n  "privateIp"')
    document = der[start : der.index(b"}", start) + 1].decode()
    sign(prov, {"pkcs7": real_pkcs7(), "document": document}, now=when)
    with pytest.raises(Unauthorized, match="not the one its pkcs7 signs"):
        sign(prov, {"pkcs7": real_pkcs7(), "document": document + "\n"}, now=when)
    tampered = der.replace(b"t2.micro", b"t2.large")
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, {"pkcs7": pem_base64(tampered)}, now=when)


# --- the tests' own keys: every form ---------------------------------------------------------


@pytest.mark.parametrize("form", ["signature", "rsa2048", "pkcs7"])
def test_every_form_is_accepted_with_configured_certificates(
    aws: AWS, data_dir: Path, form: str
) -> None:
    prov = make(data_dir, forms=[form])
    auth = sign(prov, aws.evidence(form))
    template = certificate(auth)
    assert common_name(template) == INSTANCE
    assert template.sans == OWN_NAMES
    assert auth.policy.evidence["form"] == form
    assert auth.policy.evidence["token"] == "instance:" + INSTANCE


@pytest.mark.parametrize("form", ["rsa2048", "pkcs7"])
def test_a_signed_data_form_may_repeat_the_document(aws: AWS, data_dir: Path, form: str) -> None:
    prov = make(data_dir, forms=[form])
    document = aws.document()
    sign(prov, {**aws.evidence(form, document), "document": document})
    other = aws.document(instanceType="t3.large")
    with pytest.raises(Unauthorized, match=f"not the one its {form} signs"):
        sign(prov, {**aws.evidence(form, document), "document": other})


@pytest.mark.parametrize("form", ["signature", "rsa2048", "pkcs7"])
def test_another_regions_key_is_refused(aws: AWS, data_dir: Path, form: str) -> None:
    prov = make(data_dir, forms=[form])
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, aws.evidence(form, region="us-east-1"))


def test_the_configured_certificates_replace_the_bundled_ones(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, accounts=[REAL_ACCOUNT])
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, real_evidence())


def test_a_region_without_a_certificate_is_refused_naming_the_option(
    aws: AWS, tmp_path: Path
) -> None:
    name = aws.certificate_file(tmp_path, "rsa2048", regions=("us-east-1",))
    prov = make(tmp_path, certificates={"rsa2048": name})
    with pytest.raises(
        Unauthorized,
        match=r"no AWS rsa2048 certificate for region 'eu-west-1'"
        r" \(configure one in certificates\.rsa2048\)",
    ):
        sign(prov, aws.evidence("rsa2048"))
    # A region AWS opened after the guide's certificates were copied.
    with pytest.raises(Unauthorized, match=r"certificates\.rsa2048"):
        sign(make(), aws.evidence("rsa2048", aws.document(region="il-central-1"), region=REGION))


def test_a_document_signed_with_rsa_cannot_pass_as_pkcs7(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, forms=["pkcs7"])
    evidence = aws.evidence("rsa2048")
    with pytest.raises(Unauthorized, match="does not verify"):
        sign(prov, {"pkcs7": evidence["rsa2048"]})


# --- trust on first use, one use per document ------------------------------------------------


def test_trust_on_first_use_records_the_instance(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, forms=["signature", "rsa2048"])
    first = sign(prov, aws.evidence("signature"))
    # The same instance with another form, another key, later: the same use, which the
    # host refuses as used.
    again = sign(prov, aws.evidence("rsa2048"), now=NOW + timedelta(minutes=5))
    assert first.token.token_id == again.token.token_id == "instance:" + INSTANCE
    assert first.token.provisioner == "aws"


def test_without_trust_on_first_use_each_document_is_used_once(aws: AWS, data_dir: Path) -> None:
    prov = make(
        data_dir, trust_on_first_use=False, max_instance_age="1h", forms=["signature", "rsa2048"]
    )
    document = aws.document()
    auth = sign(prov, aws.evidence("signature", document))
    assert auth.token.token_id == "sha256:" + hashlib.sha256(document.encode()).hexdigest()
    assert auth.token.expires_at == LAUNCHED + timedelta(hours=1, minutes=1)
    # The same document in another form is the same use.
    assert sign(prov, aws.evidence("rsa2048", document)).token.token_id == auth.token.token_id
    relaunched = aws.document(
        pendingTime=(NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert sign(prov, aws.evidence("signature", relaunched)).token.token_id != auth.token.token_id


# --- refusals: the request (401) -------------------------------------------------------------


def test_a_request_for_another_ca_or_provisioner_is_refused(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir)
    for audience in (
        "https://other-ca.example/1.0/sign#aws",
        SIGN_URL + "#other",
        SIGN_URL,
        SIGN_URL + "/#aws",
    ):
        with pytest.raises(Unauthorized, match=r"expected https://ca\.example/1\.0/sign#aws"):
            sign(prov, aws.evidence("signature"), audience=audience)


def test_an_expired_request_is_refused(aws: AWS, data_dir: Path) -> None:
    token, key = request(aws.evidence("signature"), now=NOW - timedelta(minutes=10))
    reading = AWSProvisioner.read_credential(token)
    assert reading is not None
    with pytest.raises(Unauthorized, match="expired"):
        make(data_dir).authorize_sign(reading, csr_for(key), ctx())


def test_a_request_not_signed_by_the_csrs_key_is_refused(aws: AWS, data_dir: Path) -> None:
    with pytest.raises(Unauthorized, match="signature"):
        sign(make(data_dir), aws.evidence("signature"), csr=csr_for(new_key()))


def test_a_request_living_too_long_is_refused(aws: AWS, data_dir: Path) -> None:
    key = new_key()
    issued = int(NOW.timestamp())
    claims = {
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + 3600,
        "aws": aws.evidence("signature"),
    }
    token = sign_compact(claims, key, headers={"typ": "devid-instance-identity+jwt"})
    reading = AWSProvisioner.read_credential(token)
    assert reading is not None
    with pytest.raises(Unauthorized, match="lifetime"):
        make(data_dir).authorize_sign(reading, csr_for(key), ctx())


def test_a_form_not_enabled_is_refused(aws: AWS, data_dir: Path) -> None:
    with pytest.raises(
        Unauthorized, match=r"does not accept the pkcs7 form \(its forms: rsa2048, signature\)"
    ):
        sign(make(data_dir), aws.evidence("pkcs7"))
    with pytest.raises(Unauthorized, match="does not accept the signature form"):
        sign(make(data_dir, forms=["rsa2048"]), aws.evidence("signature"))


@pytest.mark.parametrize(
    ("evidence", "match"),
    [
        ({}, "exactly one of signature, rsa2048 and pkcs7"),
        ({"document": "{}"}, "exactly one of"),
        ({"signature": "AAAA", "rsa2048": "AAAA", "document": "{}"}, "exactly one of"),
        ({"signature": "AAAA", "document": "{}", "nonce": "1"}, "unknown members: nonce"),
        ({"signature": "AAAA"}, "comes without its document"),
        ({"signature": "not base64!", "document": "{}"}, "not base64"),
        ({"signature": "AAAA", "document": 7}, "document's text"),
        ({"signature": "", "document": "{}"}, "must be base64 text"),
        ({"signature": ["AAAA"], "document": "{}"}, "must be base64 text"),
        ({"signature": "AAAA", "document": "\ud800"}, "not UTF-8"),
        ({"rsa2048": "AAAA"}, "rsa2048: the SignedData is malformed"),
        ({"rsa2048": "éé"}, "not base64"),
        ({"signature": "AAAA", "document": "not json"}, "not JSON"),
        ({"signature": "AAAA", "document": "[1]"}, "not a JSON object"),
        (
            {"signature": "AAAA", "document": '{"region": "eu-west-1", "region": "us-east-1"}'},
            "not JSON",
        ),
        ({"signature": "AAAA", "document": '{"accountId": "123456789012"}'}, "names no AWS region"),
        ({"signature": "AAAA", "document": '{"region": "EU-WEST-1"}'}, "names no AWS region"),
        ({"signature": "AAAA", "document": '{"region": "eu-west-1\\n"}'}, "names no AWS region"),
        ({"signature": "AAAA", "document": '{"region": "eu-west-1"}'}, "does not verify"),
    ],
)
def test_malformed_evidence_is_refused(
    data_dir: Path, evidence: dict[str, Any], match: str
) -> None:
    with pytest.raises(Unauthorized, match=match):
        sign(make(data_dir, forms=["signature", "rsa2048", "pkcs7"]), evidence)


def test_evidence_beyond_any_request_is_refused() -> None:
    # A request is at most 16 KiB, so these never arrive; Evidence bounds them anyway.
    with pytest.raises(Unauthorized, match="must be base64 text"):
        Evidence({"signature": "A" * (16 * 1024 + 4), "document": "{}"})
    with pytest.raises(Unauthorized, match="document's text"):
        Evidence({"signature": "AAAA", "document": "x" * (16 * 1024 + 1)})


@pytest.mark.parametrize("missing", ["accountId", "instanceId", "privateIp", "pendingTime"])
def test_a_document_missing_a_fact_is_refused(aws: AWS, data_dir: Path, missing: str) -> None:
    document = aws.document(**{missing: ...})
    with pytest.raises(Unauthorized, match=f"has no {missing}"):
        sign(make(data_dir), aws.evidence("signature", document))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"accountId": "12345678901"}, "accountId"),
        ({"accountId": "12345678901a"}, "accountId"),
        ({"instanceId": "i-123"}, "instanceId"),
        ({"instanceId": "i-0ABC123DEF4567890"}, "instanceId"),
        ({"instanceId": INSTANCE + "\n"}, "instanceId"),
        ({"privateIp": "10.1.2"}, "privateIp"),
        ({"privateIp": "fe80::1"}, "privateIp"),
        ({"privateIp": "010.1.2.3"}, "privateIp"),
        ({"pendingTime": "2026-12-01 11:50:00"}, "pendingTime"),
        ({"pendingTime": "2026-13-01T11:50:00Z"}, "pendingTime"),
    ],
)
def test_facts_in_forms_ec2_never_gives_are_refused(
    aws: AWS, data_dir: Path, changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(Forbidden, match=match):
        sign(
            make(data_dir),
            aws.evidence("signature", aws.document(**changes)),
        )


# --- refusals: the instance (403) -------------------------------------------------------------


def test_other_accounts_are_refused(aws: AWS, data_dir: Path) -> None:
    with pytest.raises(
        Forbidden, match="AWS account 999999999999 is not one provisioner 'aws' admits"
    ):
        sign(make(data_dir), aws.evidence("signature", aws.document(accountId="999999999999")))


def test_regions_admit_only_their_instances(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, regions=[REGION, "us-east-1"])
    sign(prov, aws.evidence("signature"))
    with pytest.raises(
        Forbidden, match="region 'ap-southeast-2' is not one provisioner 'aws' admits"
    ):
        sign(prov, aws.evidence("signature", aws.document(region="ap-southeast-2")))


def test_old_instances_are_refused(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, max_instance_age="1h")
    sign(prov, aws.evidence("signature"))
    old = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = aws.evidence("signature", aws.document(pendingTime=old))
    with pytest.raises(Forbidden, match="longer ago than provisioner 'aws' admits"):
        sign(prov, stale)
    # Without the limit, age does not matter.
    sign(make(data_dir), stale)


def test_instances_launched_in_the_future_are_refused(aws: AWS, data_dir: Path) -> None:
    future = (NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(Forbidden, match="launched in the future"):
        sign(make(data_dir), aws.evidence("signature", aws.document(pendingTime=future)))


# --- names ---------------------------------------------------------------------------------


def test_a_csr_may_ask_for_some_of_the_instances_names(aws: AWS, data_dir: Path) -> None:
    key = new_key()
    csr = csr_for(key, INSTANCE, ("ip-10-1-2-3.eu-west-1.compute.internal", "10.1.2.3"))
    assert (
        certificate(sign(make(data_dir), aws.evidence("signature"), csr=csr, key=key)).sans
        == OWN_NAMES
    )


def test_us_east_1_names_its_instances_in_ec2_internal(aws: AWS, data_dir: Path) -> None:
    document = aws.document(region="us-east-1", availabilityZone="us-east-1a")
    template = certificate(sign(make(data_dir), aws.evidence("signature", document)))
    assert template.sans[0] == SAN(SANKind.DNS, "ip-10-1-2-3.ec2.internal")
    assert template.sans[2] == SAN(SANKind.URI, f"aws://{ACCOUNT}/us-east-1/{INSTANCE}")


def test_allowed_names_admit_extra_names(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir, allowed_names=["*.svc.example.com"])
    key = new_key()
    csr = csr_for(key, "api.svc.example.com", ("api.svc.example.com",))
    template = certificate(sign(prov, aws.evidence("signature"), csr=csr, key=key))
    assert template.sans == (*OWN_NAMES, SAN(SANKind.DNS, "api.svc.example.com"))
    assert common_name(template) == INSTANCE


def test_names_outside_the_policy_are_refused(aws: AWS, data_dir: Path) -> None:
    prov = make(data_dir)
    for name in ("api.svc.example.com", "10.1.2.4", "ip-10-1-2-4.eu-west-1.compute.internal"):
        key = new_key()
        with pytest.raises(Forbidden, match="may not have"):
            sign(prov, aws.evidence("signature"), csr=csr_for(key, None, (name,)), key=key)
    key = new_key()
    with pytest.raises(Forbidden, match="common name 'root'"):
        sign(prov, aws.evidence("signature"), csr=csr_for(key, "root"), key=key)


# --- configuration, view, reading, renewal -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"accounts": []}, "accounts must list"),
        ({"accounts": "123456789012"}, "list of non-empty strings"),
        ({"accounts": ["12345"]}, "'12345' is not 12 digits"),
        ({"accounts": [123456789012]}, "list of non-empty strings"),
        ({"regions": ["Europe"]}, "'Europe' is not an AWS region"),
        ({"forms": []}, "forms must list some of rsa2048, signature, pkcs7"),
        ({"forms": ["identity"]}, r"\(not identity\)"),
        ({"certificates": "aws.pem"}, "'certificates' must be a table"),
        ({"certificates": {"dsa": "x.pem"}}, "unknown form 'dsa'"),
        ({"certificates": {"signature": 1}}, "certificates.signature must be a file name"),
        ({"certificates": {"signature": "missing.pem"}}, "cannot read"),
        ({"trust_on_first_use": False}, "trust_on_first_use = false needs max_instance_age"),
        ({"max_instance_age": "0s"}, "must be positive"),
        ({"max_instance_age": "soon"}, "max_instance_age"),
        ({"durations": {"max": "31d"}}, "at most 30d"),
        ({"allowed_names": "*.example.com"}, "allowed_names"),
        ({"issuer": "nope"}, "issuer 'nope'"),
        ({"colour": "blue"}, "unknown option"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    table = {"type": "AWS", "name": "aws", "accounts": [ACCOUNT], **options}
    env = ProvisionerEnvironment(data_dir=tmp_path, issuers=frozenset({"tls"}))
    with pytest.raises(ConfigurationError, match=match):
        AWSProvisioner.from_config("aws", table, env)


def test_accounts_are_required_and_names_have_no_fragment() -> None:
    env = ProvisionerEnvironment(data_dir=Path("x"), issuers=frozenset({"tls"}))
    with pytest.raises(ConfigurationError, match="accounts must list"):
        AWSProvisioner.from_config("aws", {"type": "AWS", "name": "aws"}, env)
    with pytest.raises(ConfigurationError, match="may not contain '#'"):
        AWSProvisioner.from_config(
            "a#b", {"type": "AWS", "name": "a#b", "accounts": [ACCOUNT]}, env
        )


PEM_KEY = "-----BEGIN CERTIFICATE-----"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "holds no certificate"),
        ("# only comments\n", "holds no certificate"),
        ("hello\n", "line 1 is neither a comment nor PEM"),
        ("# certificate for Mars\n", "'Mars' is not an AWS region"),
        ("# certificate for eu-west-1\n# certificate for us-east-1\n", "no certificate follows"),
        (f"{PEM_KEY}\nAAAA\n", "not terminated"),
        (
            f"# certificate for eu-west-1\n{PEM_KEY}\nAAAA\n-----END CERTIFICATE-----\n",
            "unreadable",
        ),
    ],
)
def test_bad_certificate_files_are_refused(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        read_region_certificates(text, "f.pem", "signature")


def test_certificate_files_carry_keys_of_their_form(aws: AWS) -> None:
    rsa_pem = key_carrier(aws.rsa[REGION]).public_bytes(Encoding.PEM).decode()
    dsa_pem = key_carrier(aws.dsa[REGION]).public_bytes(Encoding.PEM).decode()
    unlabelled = read_region_certificates
    with pytest.raises(ConfigurationError, match="not preceded by '# certificate for <region>'"):
        unlabelled(rsa_pem, "f.pem", "signature")
    with pytest.raises(ConfigurationError, match="does not carry an RSA key"):
        read_region_certificates(f"# certificate for {REGION}\n{dsa_pem}", "f.pem", "rsa2048")
    keys = read_region_certificates(
        f"# certificate for {REGION}\n{dsa_pem}\n# certificate for {REGION}\n{rsa_pem}",
        "f.pem",
        "pkcs7",
    )
    assert [
        k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) for k in keys[REGION]
    ] == [
        aws.dsa[REGION].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        aws.rsa[REGION].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    ]
    ec_pem = key_carrier(new_key()).public_bytes(Encoding.PEM).decode()
    with pytest.raises(ConfigurationError, match="RSA or DSA"):
        read_region_certificates(f"# certificate for {REGION}\n{ec_pem}", "f.pem", "pkcs7")


def test_the_public_view_names_the_forms_it_can_check(data_dir: Path) -> None:
    view = make(regions=[REGION]).public_view()
    assert view == {
        "type": "AWS",
        "name": "aws",
        "issuer": "tls",
        "cloud": "aws",
        "forms": ["rsa2048", "signature"],
        "durations": view["durations"],
    }
    assert view["durations"]["default"] == "1d"
    assert make(forms=["pkcs7", "signature", "rsa2048"]).public_view()["forms"] == [
        "rsa2048",
        "signature",
        "pkcs7",
    ]
    assert make(data_dir, forms=["pkcs7"]).public_view()["forms"] == ["pkcs7"]


def test_reading_takes_only_aws_identity_requests(aws: AWS) -> None:
    token, _ = request(aws.evidence("signature"))
    reading = AWSProvisioner.read_credential(token)
    assert reading is not None and reading.provisioner == "aws"
    assert GCPProvisioner.read_credential(token) is None
    key = new_key()
    azure = mint_identity_request(key, audience=AUDIENCE, cloud="azure", evidence={"x": 1}, now=NOW)
    assert AWSProvisioner.read_credential(azure) is None
    assert AWSProvisioner.read_credential("not a token") is None
    no_fragment, _ = request(aws.evidence("signature"), audience=SIGN_URL)
    assert AWSProvisioner.read_credential(no_fragment) is None
    plain = sign_compact({"aud": AUDIENCE, "aws": {}}, key)
    assert AWSProvisioner.read_credential(plain) is None


def test_renewal_is_on_unless_turned_off() -> None:
    make().authorize_renew(None)  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="does not renew"):
        make(allow_renewal=False).authorize_renew(None)  # type: ignore[arg-type]
