"""Cloud instance identity: what the AWS, Azure and GCP provisioners (plugins/aws,
plugins/azure, plugins/gcp) read from an anonymous client's ``ott``, and what
plugins.signed_data reads from the SignedData an AWS instance sends.

The provisioners are built from configuration as a CA builds them (``from_config``):
AWS admits account ``123456789012`` in us-east-1 and eu-west-1, instances launched
within the hour, every form, each checked with a fixture certificate file
(``certificates.<form>``, fuzz/fixtures/cloud/); Azure admits one tenant, subscription
and resource group, trusts the fixture root and intermediate (``roots``,
``intermediates``) and takes managed-identity tokens the fixture key signed; GCP admits
project ``my-project`` and takes identity tokens the same key signed. Each allows the
extra names ``*.svc.example.com`` and trusts on first use: the token uses they return
are simply returned, never recorded, so an input gets the same answer every time. The
host's key cache is :class:`TokenKeys`, which holds the fixture key under kid ``fuzz``
for Entra ID's and Google's JWK set URLs and picks it as the host picks keys
(``_select``). Instance identity requests are signed by the fixed key of the CSRs
(:data:`CSR_KEY`) for this CA's sign URL; after ``read_credential`` (routed as the host
routes it: the provisioner of the type that reads it, named by the credential) and
``authorize_sign``, the policy goes through the signing pipeline for each of
:data:`CSRS`, as ``POST /1.0/sign`` would. The clock is fixed (:data:`fuzz.harness.NOW`).

The first byte chooses the input's form (modulo :data:`FORMS`), the rest is the input:

* ``0x00`` JSON facts merged over a valid EC2 instance identity document (a ``null``
  member drops that fact; a value that is no object is the whole document), laid out as
  EC2 lays it out and signed in the ``signature`` form with the fixture key AWS's
  certificate carries, so every check after AWS's signature runs;
* ``0x01`` a byte choosing ``rsa2048`` (even) or ``pkcs7`` (odd), then the DER SignedData
  itself: read and verified by :func:`plugins.signed_data.read_signed_data` with that
  form's fixture key, and sent base64 in an identity request;
* ``0x02`` JSON merged over the content of a valid Azure attested document (its nonce
  the CSR key's), signed as Azure's metadata service signs it by the fixture
  ``metadata.azure.com`` certificate (root, intermediate, signer), sent with a valid
  managed-identity token;
* ``0x03`` JSON claims merged over those of a valid managed-identity token, signed with
  the fixture key (RS256, kid ``fuzz``), sent with a valid attested document;
* ``0x04`` a byte choosing the ``aws`` (even) or ``azure`` (odd) member, then its JSON
  value, in an identity request;
* ``0x05`` a credential's text, read by every cloud type (and authorized where one reads
  it);
* ``0x06`` JSON claims merged over those of a valid GCP instance identity token, signed
  with the fixture key (RS256, kid ``fuzz``).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from engine.csr import CSRInfo, parse_csr
from engine.jose import PublicKey, json_value, jwk_from_public_key, sign_compact
from engine.names import SAN
from engine.pipeline import SignRequest as PipelineRequest
from engine.pipeline import prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from fuzz.harness import FIXTURES_DIR, NOW, attempt, issuing_ca, text
from hosts.remote.keysets import _Key, _parse_key_set, _select
from hosts.testing.metadata import (
    AZURE_ATTESTED_LIFETIME,
    AZURE_TIME_FORMAT,
    AWSInstance,
    AzureInstance,
    GCPInstance,
    _base64_lines,
    _signed_data,
)
from plugins.api import (
    AuthorizeContext,
    Credential,
    OpenIDProvider,
    Provisioner,
    ProvisionerEnvironment,
    ServiceUnavailable,
    Unauthorized,
)
from plugins.aws import AWSProvisioner
from plugins.azure import AzureProvisioner
from plugins.gcp import GCPProvisioner
from plugins.minting import IDENTITY_REQUEST_TYPE, instance_nonce
from plugins.signed_data import SignedContent, _fast_read, _NotFast, _read_general, read_signed_data

AWS_FACTS, AWS_SIGNED_DATA, AZURE_DOCUMENT, AZURE_CLAIMS, EVIDENCE, TOKEN, GCP_CLAIMS = range(7)
FORMS = 7

FIXTURES = FIXTURES_DIR / "cloud"
SIGN_URL = "https://ca.example.com/1.0/sign"
CONTEXT = AuthorizeContext(now=NOW, audiences=frozenset({SIGN_URL}))
KID = "fuzz"

ENTRA_JWKS = "https://login.microsoftonline.com/common/discovery/keys"
GOOGLE_JWKS = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUER = "https://accounts.google.com"

AWS = AWSInstance(pending_time=NOW - timedelta(minutes=5))
AZURE = AzureInstance()
GCP = GCPInstance(created_at=NOW - timedelta(minutes=5))
RESOURCE = "api://devid-ca"
AZURE_SIGNER_DIGEST_OID = "1.2.840.113549.1.1.11"  # sha256WithRSAEncryption, as Azure names it


def _private_key(name: str) -> Any:
    return load_pem_private_key((FIXTURES / name).read_bytes(), password=None)


AWS_RSA_KEY = _private_key("aws-rsa.key")
AWS_DSA_KEY = _private_key("aws-dsa.key")
AZURE_SIGNER_KEY = _private_key("azure-signer.key")
TOKEN_KEY = _private_key("token.key")
assert isinstance(AWS_RSA_KEY, rsa.RSAPrivateKey)
assert isinstance(AWS_DSA_KEY, dsa.DSAPrivateKey)
assert isinstance(AZURE_SIGNER_KEY, rsa.RSAPrivateKey)
assert isinstance(TOKEN_KEY, rsa.RSAPrivateKey)
AZURE_SIGNER = x509.load_pem_x509_certificate((FIXTURES / "azure-signer.pem").read_bytes())
#: The public key each SignedData form of AWS is verified with.
FORM_KEYS: dict[str, rsa.RSAPublicKey | dsa.DSAPublicKey] = {
    "rsa2048": AWS_RSA_KEY.public_key(),
    "pkcs7": AWS_DSA_KEY.public_key(),
}


class TokenKeys:
    """The host's key cache as the provisioners see it, with Entra ID's and Google's
    JWK sets already fetched: each holds the fixture key under kid ``fuzz``, picked for
    the token's kid and alg as the host picks it."""

    URLS = frozenset({ENTRA_JWKS, GOOGLE_JWKS})

    def __init__(self) -> None:
        jwk = {**jwk_from_public_key(TOKEN_KEY.public_key()), "kid": KID, "use": "sig"}
        self.keys: tuple[_Key, ...] = _parse_key_set({"keys": [jwk]})

    def provider(self, issuer: str) -> OpenIDProvider:
        raise Unauthorized(f"no discovery document is read for {issuer}")

    def key(
        self,
        jwks_uri: str,
        kid: str | None,
        alg: str,
        *,
        refresh_interval: timedelta = timedelta(minutes=1),
    ) -> PublicKey:
        found = _select(self.keys, kid, alg, jwks_uri) if jwks_uri in self.URLS else None
        if found is None:
            raise Unauthorized(f"token key {kid!r} is not among the signing keys of {jwks_uri}")
        return found

    def certificate(self, url: str) -> bytes:
        raise ServiceUnavailable(f"the certificate at {url} cannot be fetched: no network here")


_ENV = ProvisionerEnvironment(
    data_dir=FIXTURES, issuers=frozenset({"tls"}), remote_keys=TokenKeys()
)
_EXTRA_NAMES = ["*.svc.example.com"]
PROVISIONERS: dict[str, Provisioner] = {
    "aws": AWSProvisioner.from_config(
        "aws",
        {
            "type": "AWS",
            "accounts": [AWS.account_id],
            "regions": ["us-east-1", "eu-west-1"],
            "forms": ["signature", "rsa2048", "pkcs7"],
            "certificates": {
                "signature": "aws-signature.pem",
                "rsa2048": "aws-rsa2048.pem",
                "pkcs7": "aws-pkcs7.pem",
            },
            "max_instance_age": "1h",
            "allowed_names": _EXTRA_NAMES,
        },
        _ENV,
    ),
    "azure": AzureProvisioner.from_config(
        "azure",
        {
            "type": "Azure",
            "tenant_id": AZURE.tenant_id,
            "resource": RESOURCE,
            "subscriptions": [AZURE.subscription_id],
            "resource_groups": [AZURE.resource_group],
            "roots": ["azure-roots.pem"],
            "intermediates": ["azure-intermediates.pem"],
            "allowed_names": _EXTRA_NAMES,
        },
        _ENV,
    ),
    "gcp": GCPProvisioner.from_config(
        "gcp",
        {
            "type": "GCP",
            "projects": [GCP.project_id],
            "max_instance_age": "1h",
            "allowed_names": _EXTRA_NAMES,
        },
        _ENV,
    ),
}
#: The provisioner types in the order the host asks them to read a credential.
TYPES: tuple[type[Provisioner], ...] = (AWSProvisioner, AzureProvisioner, GCPProvisioner)

# --- the CSRs an instance sends, and the CA that signs ------------------------------------

CSR_KEY = ec.derive_private_key(0x0C10_D5EED, ec.SECP256R1())
CSR_SPKI = CSR_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _csr(common_name: str | None, sans: tuple[str, ...]) -> CSRInfo:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
            critical=False,
        )
    return parse_csr(builder.sign(CSR_KEY, hashes.SHA256()).public_bytes(Encoding.DER))


CSRS = (
    _csr(None, ()),  # what `devid ca certificate --provisioner` sends: names from the cloud
    _csr(AWS.instance_id, (AWS.private_ip, f"ip-{AWS.private_ip.replace('.', '-')}.ec2.internal")),
    _csr(AZURE.vm_name, (f"urn:uuid:{AZURE.vm_id}",)),
    _csr("api.svc.example.com", ("api.svc.example.com",)),  # an extra name allowed_names admits
)

ISSUER = issuing_ca(0x0CA_C10D, "Fuzz Cloud Issuing CA")
CLOCK = FrozenClock(NOW)
RANDOM = CountingRandom(b"cloud")

# --- valid evidence ------------------------------------------------------------------------

_NOW = int(NOW.timestamp())


def audience(name: str) -> str:
    """The ``aud`` of a credential for provisioner *name* of this CA."""
    return f"{SIGN_URL}#{name}"


#: A valid instance identity document's facts (EC2's, in EC2's order).
BASE_FACTS: dict[str, Any] = json.loads(AWS.document(NOW))
NONCE = instance_nonce(CSR_SPKI, audience("azure"))
#: A valid attested document's content, made at NOW for the CSR key's nonce.
BASE_ATTESTED: dict[str, Any] = {
    "licenseType": AZURE.license_type,
    "nonce": NONCE,
    "plan": dict(AZURE.plan),
    "sku": AZURE.sku,
    "subscriptionId": AZURE.subscription_id,
    "timeStamp": {
        "createdOn": NOW.strftime(AZURE_TIME_FORMAT),
        "expiresOn": (NOW + AZURE_ATTESTED_LIFETIME).strftime(AZURE_TIME_FORMAT),
    },
    "vmId": AZURE.vm_id,
}
#: A valid managed-identity token's claims.
BASE_AZURE_CLAIMS: dict[str, Any] = {
    "aud": RESOURCE,
    "iss": f"https://sts.windows.net/{AZURE.tenant_id}/",
    "iat": _NOW - 60,
    "nbf": _NOW - 60,
    "exp": _NOW + 86340,
    "appid": AZURE.client_id,
    "idtyp": "app",
    "oid": AZURE.principal_id,
    "sub": AZURE.principal_id,
    "tid": AZURE.tenant_id,
    "ver": "1.0",
    "xms_mirid": AZURE.resource_id,
}
#: A valid GCP instance identity token's claims (``format=full``).
BASE_GCP_CLAIMS: dict[str, Any] = {
    "aud": audience("gcp"),
    "azp": GCP.service_account_id,
    "email": GCP.service_account_email,
    "email_verified": True,
    "exp": _NOW + 3540,
    "iat": _NOW - 60,
    "iss": GOOGLE_ISSUER,
    "sub": GCP.service_account_id,
    "google": {"compute_engine": GCP.compute_engine(NOW)},
}


def merged(base: dict[str, Any], value: Any) -> Any:
    """*value* over *base* (a null member drops it), or *value* itself if no object."""
    if not isinstance(value, dict):
        return value
    out = dict(base)
    for name, item in value.items():
        if item is None:
            out.pop(name, None)
        else:
            out[name] = item
    return out


def ec2_layout(facts: Any) -> str:
    """A document as EC2 lays it out (two-space indent, ``" : "``)."""
    return json.dumps(facts, indent=2, separators=(",", " : "), ensure_ascii=False)


def aws_signature(document: str) -> str:
    """AWS's ``signature`` of *document*: RSA PKCS #1 v1.5 / SHA-256, base64 in lines."""
    raw = document.encode("utf-8", "surrogatepass")
    return _base64_lines(AWS_RSA_KEY.sign(raw, padding.PKCS1v15(), hashes.SHA256()))


def aws_signed_data(form: str, document: bytes) -> bytes:
    """*document* as AWS signs it in the SignedData *form* (``rsa2048`` or ``pkcs7``)."""
    key = AWS_RSA_KEY if form == "rsa2048" else AWS_DSA_KEY
    certificate = x509.load_pem_x509_certificate((FIXTURES / f"aws-{form}.pem").read_bytes())
    return _signed_data(
        document,
        key,
        certificate,
        digest="sha1" if form == "pkcs7" else "sha256",
        signed_attributes=True,
        embed_certificate=False,
        now=NOW,
    )


def azure_attested(content: bytes) -> str:
    """The attested document's ``signature`` over *content*, as Azure's metadata service
    makes it: no signed attributes, digest OID sha256WithRSAEncryption, signer embedded."""
    der = _signed_data(
        content,
        AZURE_SIGNER_KEY,
        AZURE_SIGNER,
        digest="sha256",
        digest_oid=AZURE_SIGNER_DIGEST_OID,
        signed_attributes=False,
        embed_certificate=True,
        now=NOW,
    )
    return base64.b64encode(der).decode("ascii")


def token(claims: Any) -> str:
    """A token of *claims* (any JSON value) signed with the fixture key, RS256, kid
    ``fuzz``, as Entra ID and Google sign them."""
    return sign_compact(claims, TOKEN_KEY, alg="RS256", headers={"kid": KID})


def identity_request(cloud: str, evidence: Any) -> str:
    """An instance identity request carrying *evidence* (any JSON value) under *cloud*,
    for that cloud's provisioner here, signed by :data:`CSR_KEY`."""
    claims = {"aud": audience(cloud), "iat": _NOW - 10, "exp": _NOW + 290, cloud: evidence}
    return sign_compact(claims, CSR_KEY, headers={"typ": IDENTITY_REQUEST_TYPE})


ATTESTED = azure_attested(json.dumps(BASE_ATTESTED, separators=(",", ":")).encode())
ACCESS_TOKEN = token(BASE_AZURE_CLAIMS)


def _json(data: bytes, what: str) -> tuple[bool, Any]:
    """(True, the value) when *data* is JSON, else (False, None)."""
    value = attempt(json_value, data, what)
    return value is not None or data.strip() == b"null", value


# --- what the host runs ----------------------------------------------------------------------


def _issue(provisioner: Provisioner, credential: Credential, csr: CSRInfo) -> None:
    authorization = provisioner.authorize_sign(credential, csr, CONTEXT)
    policy = authorization.policy
    if policy is None:
        return
    prepared = prepare_certificate(PipelineRequest(csr=csr), policy, ISSUER, CLOCK)
    issued = prepared.sign(RANDOM)
    json.dumps(dict(issued.evidence))  # the store records it as JSON


def sign_with(credential_text: str) -> None:
    """What ``POST /1.0/sign`` runs on *credential_text* with each of :data:`CSRS`: the
    first type that reads it and names a provisioner of its own type here authorizes it
    (the token use it returns is not recorded)."""
    for cls in TYPES:
        credential = attempt(cls.read_credential, credential_text)
        if credential is None:
            continue
        provisioner = PROVISIONERS.get(credential.provisioner)
        if provisioner is None or not isinstance(provisioner, cls):
            continue
        for csr in CSRS:
            attempt(_issue, provisioner, credential, csr)
        return


def aws_facts(data: bytes) -> None:
    ok, value = _json(data, "facts")
    if not ok:
        return
    document = ec2_layout(merged(BASE_FACTS, value))
    evidence = {"document": document, "signature": aws_signature(document)}
    sign_with(identity_request("aws", evidence))


class ReadersDisagree(AssertionError):
    """plugins.signed_data's strict DER reader read a SignedData otherwise than its
    general reader does (they must give the same SignedContent)."""


def read_signed(der: bytes) -> SignedContent | None:
    """``read_signed_data`` of *der*; where its strict DER reader answered, the general
    reader must answer the same."""
    signed = attempt(read_signed_data, der)
    if signed is None:
        return None
    try:
        fast = _fast_read(der)
    except _NotFast:
        return signed
    general = attempt(_read_general, der)
    if general is None:
        raise ReadersDisagree("the strict DER reader read what the general reader refuses")
    if attrs.asdict(fast, recurse=False) != attrs.asdict(general, recurse=False):
        raise ReadersDisagree("the strict DER reader read another SignedContent")
    return signed


def aws_signed(data: bytes) -> None:
    form = "pkcs7" if data[:1] and data[0] % 2 else "rsa2048"
    der = data[1:]
    signed = read_signed(der)
    if signed is not None:
        attempt(signed.signer_certificate)
        attempt(signed.verify, FORM_KEYS[form])
    sign_with(identity_request("aws", {form: _base64_lines(der)}))


def azure_document(data: bytes) -> None:
    ok, value = _json(data, "attested document")
    if not ok:
        return
    content = json.dumps(merged(BASE_ATTESTED, value)).encode()
    evidence = {"access_token": ACCESS_TOKEN, "attested": azure_attested(content)}
    sign_with(identity_request("azure", evidence))


def azure_claims(data: bytes) -> None:
    ok, value = _json(data, "claims")
    if not ok:
        return
    evidence = {"access_token": token(merged(BASE_AZURE_CLAIMS, value)), "attested": ATTESTED}
    sign_with(identity_request("azure", evidence))


def evidence_member(data: bytes) -> None:
    cloud = "azure" if data[:1] and data[0] % 2 else "aws"
    ok, value = _json(data[1:], "evidence")
    if ok:
        sign_with(identity_request(cloud, value))


def gcp_claims(data: bytes) -> None:
    ok, value = _json(data, "claims")
    if ok:
        sign_with(token(merged(BASE_GCP_CLAIMS, value)))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    form, rest = data[0] % FORMS, data[1:]
    if form == AWS_FACTS:
        aws_facts(rest)
    elif form == AWS_SIGNED_DATA:
        aws_signed(rest)
    elif form == AZURE_DOCUMENT:
        azure_document(rest)
    elif form == AZURE_CLAIMS:
        azure_claims(rest)
    elif form == EVIDENCE:
        evidence_member(rest)
    elif form == TOKEN:
        sign_with(text(rest))
    else:
        gcp_claims(rest)
