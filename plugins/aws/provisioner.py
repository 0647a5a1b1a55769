"""The AWS provisioner: certificates for Amazon EC2 instances, from the instance identity
document AWS signs for each instance (no secret is configured on the virtual machine).

An EC2 instance reads its instance identity document and one of AWS's signatures over
it from the instance metadata service (``/latest/dynamic/instance-identity/``), and
sends them in an instance identity request (:mod:`plugins.identity_request`): one JWS
signed by the key its CSR certifies, addressed to this CA's sign URL and the
provisioner's name (``https://ca.example.com:8443/1.0/sign#aws``), living at most five
minutes, whose ``aws`` member holds exactly one signature form:

- ``{"document": ..., "signature": ...}`` (form ``signature``): the document text and
  the base64 RSA PKCS #1 v1.5 / SHA-256 signature over it;
- ``{"rsa2048": ...}`` (form ``rsa2048``): the base64 PKCS #7 SignedData (RSA-2048,
  SHA-256) carrying the document;
- ``{"pkcs7": ...}`` (form ``pkcs7``, DSA with SHA-1; opt-in): the same with AWS's DSA
  key.

With ``rsa2048`` and ``pkcs7`` a ``document`` member may come too and must then be the
signed document byte for byte. A request is accepted only if all of this holds (a
refusal is a 401): the request's signature verifies with the CSR's key, its audience is
exactly one of this CA's sign URLs, ``#`` and this provisioner's name, and it has not
expired; its form is one of ``forms``; AWS's signature verifies with the certificate of
that form for the region the document names (the bundled ones, see
``plugins/aws/certificates/README.md``, or the operator's ``certificates``). Only the
certificate's key is used: AWS's certificates are key carriers, self-signed, some
issued after the documents they verify were signed, so neither their validity period
nor their self-signature means anything here.

The instance the document describes must then be admitted (a refusal is a 403): its
account one of ``accounts``, its region one of ``regions`` where that is set, and with
``max_instance_age`` its ``pendingTime`` (when it was last launched) no longer ago than
that.

What binds a certificate to one instance. AWS's document carries no nonce and no
audience, and it does not change while the instance runs: anyone who has read it once
(any process on the instance, anything it was ever shown to) can present it, to this
CA or to any other, for as long as this CA admits it. The request wrapper binds the
evidence to the CSR's key, this CA and this provisioner for five minutes, so a request
captured on its way is useless elsewhere and later; it does not stop a holder of the
document from wrapping it again with a key of its own. What does:

- trust on first use (``trust_on_first_use``, the default): the first certificate for
  an instance records it as used (``instance:<instanceId>``) for good, so an instance
  gets one certificate from its document and renews it over mTLS with that
  certificate's key; whoever presents the document later gets none. The operator lifts
  that (a rebuilt instance that should have another) with ``devid cloud forget``.
- ``max_instance_age``: a document is accepted only within that long of the instance's
  launch, which bounds how long a copied document is worth anything. Without trust on
  first use it is required, and each document is used once (remembered by its SHA-256
  until it is too old to be admitted anyway).
- ``accounts``: only documents of the listed AWS accounts are admitted.

The certificate names the instance: its common name is the instance ID, its SANs the
instance's private DNS name (``ip-A-B-C-D.ec2.internal`` in us-east-1,
``ip-A-B-C-D.REGION.compute.internal`` elsewhere), its private IP address and the URI
``aws://ACCOUNT/REGION/INSTANCE_ID``, which names this one instance (instance IDs are
not reused). A CSR may ask for some of those and, beyond them, for names
``allowed_names`` matches (none by default). EKUs are clientAuth and serverAuth by
default. Certificates come from the TLS CA, carry the ``cloud-instance`` assurance
marker, and are renewed by their key (``allow_renewal``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from plugins.api import (
    LEEWAY,
    SAN,
    Authorization,
    AuthorizeContext,
    BadRequest,
    ConfigurationError,
    Credential,
    CSRInfo,
    DurationLimits,
    Forbidden,
    KeyType,
    NamePatterns,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    RenewAuthorization,
    RenewContext,
    TokenUse,
    Unauthorized,
    durations_view,
    first_use,
    instance_names,
    instance_policy,
    parse_ekus,
    read_identity_request,
    read_signed_data,
    sha256_token_id,
    verify_identity_request,
)

#: The evidence member of an instance identity request.
CLOUD = "aws"
#: The signature forms, in the order the public view lists them.
FORMS = ("rsa2048", "signature", "pkcs7")
DEFAULT_FORMS = ("signature", "rsa2048")
#: The form whose document and signature arrive apart; the others are SignedData.
DETACHED_FORM = "signature"

DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)
MAX_DURATION = timedelta(days=30)
DEFAULT_EKUS = ("clientAuth", "serverAuth")
NO_PATTERNS = NamePatterns()

#: The most characters of a document, and of a form's base64 text, read at all (a
#: request is at most 16 KiB anyway: engine.jose.MAX_TOKEN_BYTES).
MAX_DOCUMENT_CHARS = 16 * 1024
MAX_SIGNATURE_CHARS = 16 * 1024
#: The region whose private DNS names end in ``ec2.internal``.
LEGACY_DNS_REGION = "us-east-1"

# The forms EC2 gives these facts.
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+){1,3}-[0-9]{1,2}$")
_PENDING_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_DESCRIPTIVE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CERTIFICATE_FOR = re.compile(r"^# certificate for (\S+)\s*$")
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"

RegionKey = rsa.RSAPublicKey | dsa.DSAPublicKey
#: A form's certificates: the keys of each region.
RegionKeys = Mapping[str, tuple[RegionKey, ...]]


def instance_uri(account_id: str, region: str, instance_id: str) -> str:
    """The URI SAN naming one instance: ``aws://ACCOUNT/REGION/INSTANCE_ID``."""
    return f"aws://{account_id}/{region}/{instance_id}"


def private_dns_name(private_ip: str, region: str) -> str:
    """EC2's private (IP-based) DNS name of an instance."""
    base = "ec2.internal" if region == LEGACY_DNS_REGION else f"{region}.compute.internal"
    return f"ip-{private_ip.replace('.', '-')}.{base}"


def read_region_certificates(text: str, where: str, form: str) -> dict[str, tuple[RegionKey, ...]]:
    """The keys of a certificate file: PEM certificates, each preceded by a line
    ``# certificate for <region>`` (other ``#`` lines and blank lines are skipped).
    Only the keys are kept; the certificates' validity and self-signatures are not
    checked (AWS's are key carriers). RSA keys, and for ``pkcs7`` DSA keys too.
    ConfigurationError for anything else."""
    keys: dict[str, list[RegionKey]] = {}
    region: str | None = None
    block: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if block is not None:
            block.append(line)
            if line != _END:
                continue
            if region is None:
                raise ConfigurationError(
                    f"{where}: line {number}: a certificate not preceded by"
                    " '# certificate for <region>'"
                )
            keys.setdefault(region, []).append(_region_key("\n".join(block), where, form, region))
            region, block = None, None
        elif line == _BEGIN:
            block = [line]
        elif match := _CERTIFICATE_FOR.match(line):
            if region is not None:
                raise ConfigurationError(
                    f"{where}: line {number}: no certificate follows '# certificate for {region}'"
                )
            if not _REGION.fullmatch(match.group(1)):
                raise ConfigurationError(
                    f"{where}: line {number}: {match.group(1)!r} is not an AWS region"
                )
            region = match.group(1)
        elif line and not line.startswith("#"):
            raise ConfigurationError(f"{where}: line {number} is neither a comment nor PEM")
    if block is not None:
        raise ConfigurationError(f"{where}: a certificate is not terminated by {_END}")
    if not keys:
        raise ConfigurationError(f"{where}: holds no certificate")
    return {r: tuple(k) for r, k in keys.items()}


def _region_key(pem: str, where: str, form: str, region: str) -> RegionKey:
    try:
        key = x509.load_pem_x509_certificate(pem.encode("ascii")).public_key()
    except (ValueError, UnicodeError) as exc:
        raise ConfigurationError(
            f"{where}: the certificate for {region} is unreadable: {exc}"
        ) from None
    if isinstance(key, rsa.RSAPublicKey) or (form == "pkcs7" and isinstance(key, dsa.DSAPublicKey)):
        return key
    kinds = "an RSA or DSA" if form == "pkcs7" else "an RSA"
    raise ConfigurationError(f"{where}: the certificate for {region} does not carry {kinds} key")


@cache
def bundled_certificates(form: str) -> dict[str, tuple[RegionKey, ...]]:
    """The certificates of *form* this package ships (``certificates/<form>.pem``)."""
    name = f"{form}.pem"
    text = resources.files("plugins.aws").joinpath("certificates", name).read_text("ascii")
    return read_region_certificates(text, f"plugins/aws/certificates/{name}", form)


def _decode_base64(text: str, what: str) -> bytes:
    """Standard base64 as the metadata service serves it (line breaks allowed)."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(f"the {what} is not base64") from None


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unauthorized(f"the {what} is not UTF-8 text") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, value in pairs:
        if key in table:
            raise ValueError(f"duplicate member {key!r}")
        table[key] = value
    return table


class Evidence:
    """The ``aws`` member of a request: one signature form and the document it signs,
    read but not verified."""

    def __init__(self, evidence: Mapping[str, Any]) -> None:
        unknown = sorted(set(evidence) - {"document", *FORMS})
        if unknown:
            raise Unauthorized(f"the aws evidence has unknown members: {', '.join(unknown)}")
        forms = [f for f in FORMS if f in evidence]
        if len(forms) != 1:
            raise Unauthorized(
                "the aws evidence must hold exactly one of signature, rsa2048 and pkcs7"
            )
        self.form = forms[0]
        text = evidence[self.form]
        if not isinstance(text, str) or not text or len(text) > MAX_SIGNATURE_CHARS:
            raise Unauthorized(f"the aws evidence's {self.form} must be base64 text")
        self.signature = _decode_base64(text, f"aws evidence's {self.form}")
        document = evidence.get("document")
        if document is not None and (
            not isinstance(document, str) or not document or len(document) > MAX_DOCUMENT_CHARS
        ):
            raise Unauthorized("the aws evidence's document must be the document's text")
        if self.form == DETACHED_FORM:
            if document is None:
                raise Unauthorized("the aws evidence's signature comes without its document")
            self.document = _utf8(document, "aws evidence's document")
            self.signed_content = None
        else:
            try:
                self.signed_content = read_signed_data(self.signature)
            except BadRequest as exc:
                raise Unauthorized(f"the aws evidence's {self.form}: {exc.detail}") from None
            self.document = self.signed_content.content
            if len(self.document) > MAX_DOCUMENT_CHARS:
                raise Unauthorized(f"the document the aws evidence's {self.form} signs is too long")
            if document is not None and _utf8(document, "aws evidence's document") != self.document:
                raise Unauthorized(
                    f"the aws evidence's document is not the one its {self.form} signs"
                )

    def verify(self, keys: tuple[RegionKey, ...]) -> None:
        """Check AWS's signature with one of a region's *keys*; Unauthorized if none
        verifies it."""
        for key in keys:
            if self.signed_content is not None:
                try:
                    self.signed_content.verify(key)
                    return
                except Unauthorized:
                    continue
            elif isinstance(key, rsa.RSAPublicKey):
                try:
                    key.verify(self.signature, self.document, padding.PKCS1v15(), hashes.SHA256())
                    return
                except InvalidSignature:
                    continue
        raise Unauthorized(f"AWS's {self.form} signature over the document does not verify")


class Document:
    """The facts of an instance identity document this provisioner uses. The region is
    read before the signature is checked (it chooses the certificate); the rest after,
    each checked to have the form EC2 gives it."""

    def __init__(self, raw: bytes) -> None:
        try:
            facts = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Unauthorized("the instance identity document is not JSON") from None
        if not isinstance(facts, dict):
            raise Unauthorized("the instance identity document is not a JSON object")
        self.facts: dict[str, Any] = facts
        region = facts.get("region")
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            raise Unauthorized("the instance identity document names no AWS region")
        self.region = region

    def read(self) -> None:
        """Read the facts of a document whose signature has verified."""
        self.account_id = self._text("accountId", _ACCOUNT_ID)
        self.instance_id = self._text("instanceId", _INSTANCE_ID)
        self.pending_time = self._pending_time()
        address = self._text("privateIp")
        try:
            self.private_ip = str(ipaddress.IPv4Address(address))
        except ValueError:
            raise Forbidden(f"privateIp {address!r} is not an IPv4 address") from None
        self.descriptive = {
            name: value
            for name, key in (
                ("availability_zone", "availabilityZone"),
                ("instance_type", "instanceType"),
                ("image_id", "imageId"),
            )
            if isinstance(value := self.facts.get(key), str) and _DESCRIPTIVE.fullmatch(value)
        }

    def _text(self, key: str, form: re.Pattern[str] | None = None) -> str:
        value = self.facts.get(key)
        if not isinstance(value, str) or not value:
            raise Unauthorized(f"the instance identity document has no {key}")
        if form is not None and not form.fullmatch(value):
            raise Forbidden(f"{key} {value!r} is not one this CA can use")
        return value

    def _pending_time(self) -> datetime:
        value = self._text("pendingTime", _PENDING_TIME)
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise Forbidden(f"pendingTime {value!r} is not one this CA can use") from None

    def sans(self) -> tuple[SAN, ...]:
        """The instance's own names: its private DNS name, its private IP, its URI."""
        return (
            SAN.parse(private_dns_name(self.private_ip, self.region)),
            SAN.parse(self.private_ip),
            SAN.parse(instance_uri(self.account_id, self.region, self.instance_id)),
        )


class AWSProvisioner(Provisioner):
    """Signs for an EC2 instance AWS vouches for (see the module docstring)."""

    type_name: ClassVar[str] = "AWS"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        accounts: frozenset[str],
        certificates: Mapping[str, RegionKeys],
        forms: tuple[str, ...] = DEFAULT_FORMS,
        regions: frozenset[str] = frozenset(),
        max_instance_age: timedelta | None = None,
        trust_on_first_use: bool = True,
        allowed_names: NamePatterns = NO_PATTERNS,
        durations: DurationLimits = DEFAULT_DURATIONS,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        ekus: tuple[Any, ...] = DEFAULT_EKUS,
        allow_renewal: bool = True,
    ) -> None:
        where = f"provisioner {name!r}"
        if not accounts:
            raise ConfigurationError(f"{where}: accounts must list an AWS account ID")
        if not forms or not set(forms) <= set(FORMS):
            raise ConfigurationError(f"{where}: forms must list some of {', '.join(FORMS)}")
        if not trust_on_first_use and max_instance_age is None:
            raise ConfigurationError(
                f"{where}: trust_on_first_use = false needs max_instance_age (an instance's"
                " document never changes while it runs, so without either it could be used"
                " for ever)"
            )
        self.name = name
        self.issuer = issuer
        self.accounts = accounts
        self.certificates = certificates
        self.forms = tuple(f for f in FORMS if f in forms)
        self.regions = regions
        self.max_instance_age = max_instance_age
        self.trust_on_first_use = trust_on_first_use
        self.allowed_names = allowed_names
        self.durations = durations
        self.key_types = key_types
        self.ekus = parse_ekus(list(ekus), where)
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> AWSProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        if "#" in name:
            raise ConfigurationError(f"{where}: an AWS provisioner's name may not contain '#'")
        accounts = opts.strings("accounts")
        if "accounts" not in options or not accounts:
            raise ConfigurationError(f"{where}: accounts must list the AWS account IDs it admits")
        for account in accounts:
            if not _ACCOUNT_ID.fullmatch(account):
                raise ConfigurationError(f"{where}: account {account!r} is not 12 digits")
        regions = opts.strings("regions")
        for region in regions:
            if not _REGION.fullmatch(region):
                raise ConfigurationError(f"{where}: region {region!r} is not an AWS region")
        forms = opts.strings("forms") if "forms" in options else DEFAULT_FORMS
        unknown = sorted(set(forms) - set(FORMS))
        if not forms or unknown:
            raise ConfigurationError(
                f"{where}: forms must list some of {', '.join(FORMS)}"
                + (f" (not {', '.join(unknown)})" if unknown else "")
            )
        max_age: timedelta | None = None
        if opts.get("max_instance_age") is not None:
            max_age = opts.duration("max_instance_age", "0s")
            if max_age <= timedelta(0):
                raise ConfigurationError(f"{where}: max_instance_age must be positive")
        durations = opts.durations(DEFAULT_DURATIONS)
        if durations.maximum > MAX_DURATION:
            raise ConfigurationError(f"{where}: durations.max may be at most 30d")
        provisioner = cls(
            name=name,
            issuer=opts.issuer(env.issuers),
            accounts=frozenset(accounts),
            certificates=_certificates(opts, env.data_dir, forms),
            forms=forms,
            regions=frozenset(regions),
            max_instance_age=max_age,
            trust_on_first_use=opts.boolean("trust_on_first_use", True),
            allowed_names=NamePatterns.parse(
                list(opts.strings("allowed_names")), f"{where}: allowed_names"
            ),
            durations=durations,
            key_types=opts.key_types(),
            ekus=tuple(opts.template_ekus(DEFAULT_EKUS)),
            allow_renewal=opts.boolean("allow_renewal", True),
        )
        opts.finish()
        return provisioner

    def checkable_forms(self) -> list[str]:
        """The forms this provisioner accepts and has certificates for."""
        return [f for f in self.forms if self.certificates.get(f)]

    def public_view(self) -> dict[str, Any]:
        """What a client needs (never the allow-lists): which forms to fetch."""
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "cloud": CLOUD,
            "forms": self.checkable_forms(),
            "durations": durations_view(self.durations),
        }

    # --- credentials ---------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """An instance identity request with an ``aws`` member, addressed to the
        provisioner its ``aud`` fragment names. None for anything else."""
        return read_identity_request(text, CLOUD)

    # --- authorization -------------------------------------------------------------------

    def _verified_document(self, evidence: Evidence) -> Document:
        if evidence.form not in self.forms:
            raise Unauthorized(
                f"provisioner {self.name!r} does not accept the {evidence.form} form"
                f" (its forms: {', '.join(self.forms)})"
            )
        document = Document(evidence.document)
        keys = self.certificates.get(evidence.form, {}).get(document.region)
        if not keys:
            raise Unauthorized(
                f"provisioner {self.name!r} has no AWS {evidence.form} certificate for region"
                f" {document.region!r} (configure one in certificates.{evidence.form})"
            )
        evidence.verify(keys)
        document.read()
        return document

    def _check_instance(self, document: Document, now: datetime) -> None:
        if document.account_id not in self.accounts:
            raise Forbidden(
                f"AWS account {document.account_id} is not one provisioner {self.name!r} admits"
            )
        if self.regions and document.region not in self.regions:
            raise Forbidden(
                f"region {document.region!r} is not one provisioner {self.name!r} admits"
            )
        if document.pending_time > now + LEEWAY:
            raise Forbidden(
                f"instance {document.instance_id} was launched in the future"
                f" ({document.pending_time.isoformat()})"
            )
        if (
            self.max_instance_age is not None
            and now - document.pending_time > self.max_instance_age
        ):
            raise Forbidden(
                f"instance {document.instance_id} was launched {document.pending_time.isoformat()},"
                f" longer ago than provisioner {self.name!r} admits ({self.max_instance_age})"
            )

    def _names(self, document: Document, csr: CSRInfo) -> tuple[SAN, ...]:
        """The instance's names and the CSR's extra names ``allowed_names`` admits."""
        who = f"instance {document.instance_id}"
        return instance_names(document.sans(), csr, self.allowed_names, who)

    def _token_use(self, document: Document, raw: bytes, now: datetime) -> TokenUse:
        if self.trust_on_first_use:
            return first_use(self.name, document.instance_id, now)
        # One use per document, whatever form carries it, remembered until the document
        # is too old to be admitted.
        assert self.max_instance_age is not None
        return TokenUse(
            provisioner=self.name,
            token_id=sha256_token_id(raw),
            expires_at=document.pending_time + self.max_instance_age + LEEWAY,
        )

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        request = verify_identity_request(credential, csr, ctx, provisioner=self.name, cloud=CLOUD)
        evidence = Evidence(request.evidence)
        document = self._verified_document(evidence)
        self._check_instance(document, ctx.now)
        sans = self._names(document, csr)
        use = self._token_use(document, evidence.document, ctx.now)
        facts: dict[str, Any] = {
            "method": "aws-instance-identity",
            "form": evidence.form,
            "account": document.account_id,
            "region": document.region,
            "instance_id": document.instance_id,
            "private_ip": document.private_ip,
            "pending_time": document.pending_time.isoformat(),
            **document.descriptive,
            "token": use.token_id,
        }
        policy = instance_policy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            key_types=self.key_types,
            ekus=self.ekus,
            common_name=document.instance_id,
            sans=sans,
            evidence=facts,
        )
        return Authorization(policy=policy, token=use)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Renewal by the certificate's key (the default): with trust on first use it is
        how an instance keeps its identity, since its document gets no second
        certificate."""
        if not self.allow_renewal:
            raise Forbidden(f"provisioner {self.name!r} does not renew certificates")
        return RenewAuthorization(checked={"allow_renewal": True})


def _certificates(opts: Options, data_dir: Path, forms: tuple[str, ...]) -> dict[str, RegionKeys]:
    """Each accepted form's certificates: the operator's file (``certificates.<form>``,
    relative to the data directory) or the bundled ones."""
    table = opts.get("certificates", {})
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{opts.where}: 'certificates' must be a table")
    unknown = sorted(set(table) - set(FORMS))
    if unknown:
        raise ConfigurationError(
            f"{opts.where}: certificates: unknown form {', '.join(map(repr, unknown))}"
            f" (the forms are {', '.join(FORMS)})"
        )
    result: dict[str, RegionKeys] = {}
    for form in forms:
        name = table.get(form)
        if name is None:
            result[form] = bundled_certificates(form)
            continue
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{opts.where}: certificates.{form} must be a file name")
        path = Path(name) if Path(name).is_absolute() else data_dir / name
        try:
            text = path.read_text("ascii")
        except (OSError, UnicodeError) as exc:
            raise ConfigurationError(f"{opts.where}: cannot read {path}: {exc}") from None
        result[form] = read_region_certificates(text, f"{opts.where}: {path}", form)
    return result
