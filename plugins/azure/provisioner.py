"""The Azure provisioner: certificates for Azure virtual machines, from what Azure's
instance metadata service (IMDS) signs for each machine (no secret is configured on the
virtual machine).

The credential is an instance identity request (:mod:`plugins.identity_request`): one
JWS the virtual machine signs with the key its CSR certifies, sent to ``POST
/1.0/sign`` as ``ott``, addressed to ``<this CA's sign URL>#<provisioner name>`` and
living at most five minutes, whose ``"azure"`` member carries

- ``access_token``: a token of the machine's system-assigned managed identity, which
  IMDS gets from Microsoft Entra ID for the resource ``resource`` (the application ID URI
  of an app registration made for this CA, e.g. ``api://devid-ca``);
- ``attested``: the ``signature`` value of IMDS's attested-data answer
  (``/metadata/attested/document?nonce=N``), a base64 DER CMS SignedData, asked for with
  the nonce :func:`plugins.api.instance_nonce` computes from the CSR's key and the
  request's audience (absent when ``attested_document`` is false).

A request is accepted only if all of this holds (a refusal is a 401, but for an
identity that is not a virtual machine's: 403):

- the CSR's key signed it, for exactly one of this CA's sign URLs and this provisioner,
  and it has not expired;
- the access token's signature verifies with a key of Entra ID's JWK set (``jwks_url``,
  fetched by the host through :class:`plugins.api.RemoteKeys`, found by ``kid``), with
  RS256 only; its ``iss`` is exactly ``token_issuer``, its ``aud`` exactly ``resource``
  and its ``tid`` the configured ``tenant_id``; ``exp`` (required), ``nbf`` and ``iat``
  hold now with a minute's leeway and it lives no longer than 25 hours;
- its ``xms_mirid`` names a virtual machine
  (``/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME``):
  only a virtual machine's system-assigned identity names itself so (a user-assigned
  identity names its own resource, which many machines may share);
- with ``attested_document`` (the default): the SignedData embeds its signer's
  certificate, which chains through intermediates (the bundled ones, those of
  ``intermediates``, those the SignedData embeds and those fetched from the AIA URLs of
  ``intermediate_hosts``, below) to a root (the bundled ones, or
  ``roots`` in their place) with every certificate valid now; the signer is a TLS server
  certificate of Azure's metadata service (``metadata.azure.com``, ``metadata.azure.us``,
  ``metadata.azure.cn``, ``metadata.microsoftazure.de``, or a region's name under one of
  them); its signature over the document verifies; the document's ``nonce`` is the nonce
  of the CSR's key and the request's audience; it has not expired (``expiresOn``) and
  was not made in the future (``createdOn``); its ``subscriptionId`` is the token's
  subscription and its ``vmId`` a GUID.

The machine must then be admitted (a refusal is a 403): its subscription one of
``subscriptions`` and its resource group one of ``resource_groups`` where those are set
(both compared without regard to case).

How each piece is bound. The access token says which machine it is (its resource ID,
which Azure signs into the token of that machine's own identity), and its audience is the
resource of this CA's app registration, so a token a machine gets for another service is
refused. The token is not bound to the CSR's key: any process on the machine may ask
IMDS for it. The attested document binds the request to the key and to this CA
provisioner: its nonce is ten decimal digits (the form IMDS takes) drawn from the SHA-256
of the CSR's public key and of ``<sign URL>#<provisioner>``, so a document asked for
another CA or provisioner is refused outright, and one copied on its way is of use for
another key only to someone who also holds the machine's token and finds a key with the
same nonce. Ten digits are about 33 bits: that search takes some 10¹⁰ key derivations
(hours of one core's time, less with many), within the document's six-hour lifetime and
before the machine's own request is recorded; it keeps copies from casual reuse, and
trust on first use (below) is what keeps a machine to one key. The document's
``subscriptionId`` ties it to the token's machine, and its ``vmId`` (unique to the
machine, for good) is what trust on first use remembers. Without the attested document
(``attested_document = false``), anyone holding a copy of a machine's token could
certify a key of their own with it until trust on first use has recorded the machine;
keep the attested document wherever the machine can reach IMDS.

Trust on first use (``trust_on_first_use``, the default): the request is recorded as
used for the machine (``instance:<vmId>``; ``instance:<resource ID, lowercased>``
without the attested document) for good, so a machine gets one certificate from its
evidence and renews it over mTLS with that certificate's key; anyone who later obtains
its evidence cannot get a second certificate for it. The operator lifts that (a rebuilt
machine) with ``devid cloud forget``. Without it, each attested document (each access
token, without the attested document) is used once, remembered by its SHA-256 until it
expires.

Azure's metadata service certificates are issued by intermediate CAs Microsoft rotates
without notice (today DigiCert Global Root G2 → Microsoft TLS RSA Root G2 → an issuing CA
→ the signer), and the attested document embeds only the signer. The bundled
intermediates are those of the documents devid is tested against, and the roots are
DigiCert Global Root G2 and Baltimore CyberTrust Root (expired in May 2025, kept so that
documents signed under it can be checked at their own time; a root that is not valid now
verifies nothing). When the signer does not chain through the intermediates held, and
``fetch_intermediates`` is on (the default), the intermediates missing are fetched through
the host (:meth:`plugins.api.RemoteKeys.certificate`, cached a day) from the AIA
``caIssuers`` URLs (``http://`` or ``https://``) of the signer, then of each certificate
fetched, at most :data:`MAX_FETCHES` per request, and only from the hosts of
``intermediate_hosts`` (default ``www.microsoft.com`` and ``cacerts.digicert.com``, where
Microsoft publishes its CA certificates; port 80 or 443, any port for a loopback host):
a URL on another host is never fetched. A fetched certificate is only a candidate: it
counts only if it is a CA certificate and the path through it reaches a configured root
with every certificate valid now, as above; those of the last path found are offered
to later requests first (as candidates still), so they chain without asking the host. A
fetch that fails is a 503 only when no path is found otherwise. An operator may still
add intermediate CAs with ``intermediates`` (PEM files, paths relative to the data
directory), and may replace the roots with ``roots``.

The certificate names the machine: its common name is the virtual machine's name, its
SANs the URI ``azure://SUBSCRIPTION/RESOURCE_GROUP/NAME`` (the resource group
lowercased) and, with the attested document, ``urn:uuid:VM_ID``, which names this one
machine for good. A CSR may ask for some of those and, beyond them, for names
``allowed_names`` matches (none by default). Its EKUs are clientAuth and serverAuth by
default; certificates come from the TLS CA, carry the ``cloud-instance`` assurance
marker, and are renewed by their key (``allow_renewal``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from plugins.api import (
    LEEWAY,
    SAN,
    Authorization,
    AuthorizeContext,
    ConfigurationError,
    Credential,
    CSRInfo,
    DurationLimits,
    Forbidden,
    IdentityRequest,
    KeyType,
    NamePatterns,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    RemoteKeys,
    RenewAuthorization,
    RenewContext,
    ServiceUnavailable,
    TokenUse,
    Unauthorized,
    check_roots,
    check_token_times,
    durations_view,
    first_use,
    instance_names,
    instance_nonce,
    instance_policy,
    jose_token,
    parse_ekus,
    read_identity_request,
    read_signed_data,
    sha256_token_id,
    url_problem,
    verify_identity_request,
    verify_remote_token,
)

#: The member of an identity request holding Azure's evidence.
CLOUD = "azure"
#: The only algorithm Entra ID signs managed-identity tokens with.
ALGORITHM = "RS256"
DEFAULT_JWKS_URL = "https://login.microsoftonline.com/common/discovery/keys"
DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)
MAX_DURATION = timedelta(days=30)
#: Managed-identity tokens live up to 24 hours.
MAX_TOKEN_LIFETIME = timedelta(hours=25)
DEFAULT_EKUS = ("clientAuth", "serverAuth")
NO_PATTERNS = NamePatterns()
#: The most signature checks from the signer to a root (the signer, at most three
#: intermediates, the root).
MAX_CHAIN_LINKS = 4
#: Base64 characters of the evidence: an access token, an attested document (64 KiB DER).
MAX_ACCESS_TOKEN_CHARS = 16 * 1024
MAX_ATTESTED_CHARS = 90 * 1024
MAX_NONCE_CHARS = 64
#: The most certificates fetched from AIA URLs for one request.
MAX_FETCHES = 3
#: The most fetched certificates a provisioner keeps offering as candidates.
MAX_LEARNED = 8
#: Where Microsoft publishes the CA certificates of Azure's services ("Azure Certificate
#: Authority details"); an AIA URL on another host is not fetched.
DEFAULT_INTERMEDIATE_HOSTS = ("www.microsoft.com", "cacerts.digicert.com")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: The bundled trust: the roots and intermediates of Azure's metadata service.
BUNDLED_ROOTS = ("digicert_global_root_g2.pem", "baltimore_cybertrust_root.pem")
BUNDLED_INTERMEDIATES = ("microsoft_azure_tls_issuing_ca_05.pem", "microsoft_rsa_tls_ca_01.pem")

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
# Azure's naming rules, ASCII only (the names go into URIs and a common name): resource
# groups of 1-90 letters, digits, '-', '_', '.', '(' and ')', not ending in '.'; virtual
# machines of 1-64 letters, digits, '-', '_' and '.', starting with a letter or digit and
# ending with one or '_'.
_RESOURCE_GROUP = r"[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]"
_VM_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,62}[A-Za-z0-9_])?"
_VM_RESOURCE_ID = re.compile(
    rf"/subscriptions/(?P<subscription>[0-9A-Fa-f-]{{36}})"
    rf"/resourcegroups/(?P<group>{_RESOURCE_GROUP})"
    rf"/providers/microsoft\.compute/virtualmachines/(?P<name>{_VM_NAME})",
    re.ASCII | re.IGNORECASE,
)
_METADATA_NAME = re.compile(
    r"(?:[a-z0-9]{1,40}\.)?metadata\.(?:azure\.com|azure\.us|azure\.cn|microsoftazure\.de)",
    re.ASCII,
)
_DOCUMENT_TIME = re.compile(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d [+-]\d{4}", re.ASCII)
_DOCUMENT_TIME_FORMAT = "%m/%d/%y %H:%M:%S %z"
# What cryptography raises for certificate fields it cannot read.
_MALFORMED = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def instance_uri(subscription: str, resource_group: str, vm_name: str) -> str:
    """The URI SAN naming a virtual machine: ``azure://SUBSCRIPTION/RESOURCE_GROUP/NAME``."""
    return f"azure://{subscription}/{resource_group.lower()}/{vm_name}"


def _guid(value: Any) -> str | None:
    """*value* as a lowercase GUID, or None if it is not one."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    lowered = value.lower()
    return lowered if _GUID.fullmatch(lowered) else None


def _host_name(host: str) -> bool:
    """Whether *host* is a bare host name or IP address (what a URL's host may be)."""
    if _is_ipv6(host):
        return True
    if not host.isascii() or any(c in host for c in "/:@?#[]%\\ "):
        return False
    try:
        return urlsplit(f"http://{host}/").hostname == host.lower()
    except ValueError:
        return False


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


# --- trust anchors ---------------------------------------------------------------------


@functools.cache
def _bundled(names: tuple[str, ...]) -> tuple[x509.Certificate, ...]:
    folder = resources.files(__package__) / "roots"
    certificates: list[x509.Certificate] = []
    for name in names:
        certificates.extend(x509.load_pem_x509_certificates((folder / name).read_bytes()))
    return tuple(certificates)


def bundled_roots() -> tuple[x509.Certificate, ...]:
    """The roots devid trusts for Azure's metadata service unless ``roots`` replaces them."""
    return _bundled(BUNDLED_ROOTS)


def bundled_intermediates() -> tuple[x509.Certificate, ...]:
    """The intermediate CAs devid bundles (``intermediates`` adds to them)."""
    return _bundled(BUNDLED_INTERMEDIATES)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except _MALFORMED:
        return False
    return constraints.ca


def _load_certificates(
    data_dir: Path, files: Sequence[str], where: str
) -> tuple[x509.Certificate, ...]:
    certificates: list[x509.Certificate] = []
    for name in files:
        path = data_dir / name
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read {path}: {exc.strerror}") from None
        try:
            found = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigurationError(f"{where}: {path} holds no PEM certificates") from None
        certificates.extend(found)
    return tuple(certificates)


def _intermediates(certificates: Iterable[x509.Certificate], where: str) -> None:
    for cert in certificates:
        if not _is_ca(cert):
            raise ConfigurationError(
                f"{where}: {cert.subject.rfc4514_string()!r} is not a CA certificate"
            )


# --- the attested document -----------------------------------------------------------------


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    """Whether *cert* is valid at *now* (False for a validity cryptography cannot read:
    it reads the fields of an embedded certificate only when first used)."""
    try:
        return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    except _MALFORMED:
        return False


#: Signature checks of one CA certificate by another (an intermediate by its root), by the
#: two certificates (equal exactly when their DER is): every document signed under that
#: intermediate repeats them. A signer's own signature is always checked.
_CA_LINKS: dict[tuple[x509.Certificate, x509.Certificate], bool] = {}
_CA_LINKS_MAX = 256


def _signed(child: x509.Certificate, parent: x509.Certificate, *, child_is_ca: bool) -> bool:
    if not child_is_ca:
        return _verifies(child, parent)
    key = (child, parent)
    known = _CA_LINKS.get(key)
    if known is None:
        known = _verifies(child, parent)
        if len(_CA_LINKS) >= _CA_LINKS_MAX:
            _CA_LINKS.clear()
        _CA_LINKS[key] = known
    return known


def _verifies(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, UnsupportedAlgorithm, *_MALFORMED):
        return False
    return True


def _issued_by(child: x509.Certificate, parent: x509.Certificate, below: int) -> bool:
    """Whether CA *parent* signed *child*, with *below* CA certificates under *child* on
    the path (*child* is one of them unless it is the signer), for *parent*'s path length
    constraint. Fails closed."""
    try:
        if child.issuer != parent.subject:
            return False
        constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            return False
        if constraints.path_length is not None and constraints.path_length < below:
            return False
        try:
            usage = parent.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            return False
    except (x509.ExtensionNotFound, *_MALFORMED):
        return False
    return _signed(child, parent, child_is_ca=below > 0)


def chain_to_root(
    signer: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """A path ``[signer, intermediates..., root]`` to one of *roots*, every certificate on
    it valid at *now*, at most :data:`MAX_CHAIN_LINKS` signatures long; Unauthorized if
    there is none."""
    if not _valid_at(signer, now):
        try:
            period = (
                f" ({signer.not_valid_before_utc.isoformat()} to"
                f" {signer.not_valid_after_utc.isoformat()})"
            )
        except _MALFORMED:
            period = ""
        raise Unauthorized(f"the attested document's signer certificate is not valid now{period}")

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        below = len(path) - 1  # CA certificates under current's issuer, current included
        for root in roots:
            if _valid_at(root, now) and _issued_by(current, root, below):
                return [*path, root]
        if len(path) >= MAX_CHAIN_LINKS:
            return None
        for ca in intermediates:
            if ca in path or not _valid_at(ca, now) or not _issued_by(current, ca, below):
                continue
            found = extend([*path, ca])
            if found is not None:
                return found
        return None

    path = extend([signer])
    if path is None:
        raise Unauthorized(
            "the attested document's signer certificate does not chain to a trusted root"
            " with every certificate valid now (Azure rotates its intermediate CAs: add the"
            " current ones with the provisioner's intermediates option)"
        )
    return path


def ca_issuers(cert: x509.Certificate) -> list[str]:
    """The ``http://`` and ``https://`` AIA caIssuers URIs of *cert*, in its order (none
    when it has none or they cannot be read)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, *_MALFORMED):
        return []
    found = []
    for description in access:
        location = description.access_location
        if description.access_method != AuthorityInformationAccessOID.CA_ISSUERS:
            continue
        if not isinstance(location, x509.UniformResourceIdentifier):
            continue
        uri = location.value
        if uri.lower().startswith(("http://", "https://")) and uri not in found:
            found.append(uri)
    return found


def _fetched_certificate(data: bytes) -> x509.Certificate | None:
    """The CA certificate *data* holds (DER or PEM), or None when it holds none."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except _MALFORMED:
        return None
    return cert if _is_ca(cert) else None


@attrs.define
class IntermediateFetcher:
    """Fetches the intermediate CAs a signer's AIA names, through the host's
    :class:`plugins.api.RemoteKeys`, from the *hosts* allowed only (see the module
    docstring).

    ``learned`` holds the fetched certificates of the last path found (at most
    :data:`MAX_LEARNED`): later requests offer them as candidates first, so a signer of
    the same CA chains without asking the host again. They are candidates like any
    other: a path through one must still reach a root with every certificate valid now.
    """

    remote_keys: RemoteKeys
    hosts: frozenset[str]
    learned: tuple[x509.Certificate, ...] = ()

    def host_problem(self, url: str) -> str | None:
        """Why *url* may not be fetched, or None: its host must be one of ``hosts``,
        on port 80 or 443 (any port for a loopback host), with no credentials."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            return f"{url!r} is not a URL"
        refused = f"not fetching {url!r}: its host is not in the provisioner's intermediate_hosts"
        if parts.scheme.lower() not in ("http", "https") or host not in self.hosts:
            return refused
        if parts.username is not None or parts.password is not None:
            return f"not fetching {url!r}: it carries credentials"
        if port is not None and port not in (80, 443) and host not in _LOOPBACK_HOSTS:
            return f"not fetching {url!r}: only ports 80 and 443 are fetched from"
        return None

    def chain(
        self,
        signer: x509.Certificate,
        pool: Sequence[x509.Certificate],
        roots: Sequence[x509.Certificate],
        now: datetime,
        refused: Unauthorized,
    ) -> list[x509.Certificate]:
        """A path from *signer* to one of *roots* through *pool* and the CA certificates
        fetched from the AIA URLs of *signer* and then of each certificate fetched, at
        most :data:`MAX_FETCHES`. Unauthorized (*refused*'s reason, and the URLs not
        fetched) when there is none; ServiceUnavailable when there is none and a fetch
        failed."""
        candidates = list(pool)
        reading = [signer]
        asked: set[str] = set()
        not_fetched: list[str] = []
        failures: list[str] = []
        fetches = 0
        while reading and fetches < MAX_FETCHES:
            for url in ca_issuers(reading.pop(0)):
                if url in asked:
                    continue
                asked.add(url)
                problem = self.host_problem(url)
                if problem is not None:
                    not_fetched.append(problem)
                    continue
                if fetches >= MAX_FETCHES:
                    break
                fetches += 1
                try:
                    data = self.remote_keys.certificate(url)
                except ServiceUnavailable as exc:
                    failures.append(exc.detail)
                    continue
                found = _fetched_certificate(data)
                if found is None:
                    continue
                if found in candidates:  # held already: what it lacks is above it
                    reading.append(found)
                    continue
                candidates.append(found)
                try:
                    path = chain_to_root(signer, candidates, roots, now)
                except Unauthorized:
                    reading.append(found)
                    continue
                fetched = [c for c in path[1:-1] if c not in pool]
                kept = [c for c in self.learned if c not in fetched]
                # One assignment: a thread reading ``learned`` sees the old or new tuple.
                self.learned = (*fetched, *kept)[:MAX_LEARNED]
                return path
        if failures:
            raise ServiceUnavailable(
                f"{refused.detail}; the intermediate CAs its AIA names cannot be fetched:"
                f" {'; '.join(failures)}"
            )
        if not_fetched:
            raise Unauthorized(f"{refused.detail}; {'; '.join(not_fetched)}")
        raise refused


def metadata_service_name(name: str) -> bool:
    """Whether *name* is a DNS name of Azure's metadata service (``metadata.azure.com``,
    ``metadata.azure.us``, ``metadata.azure.cn``, ``metadata.microsoftazure.de``, or a
    region's name under one of them)."""
    return _METADATA_NAME.fullmatch(name.lower().rstrip(".")) is not None


def _check_signer(signer: x509.Certificate) -> None:
    """The signer is a TLS server certificate of Azure's metadata service."""
    try:
        common_names = [a.value for a in signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        extensions = signer.extensions
        names = [str(n) for n in common_names]
        try:
            sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names.extend(sans.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            pass
        constraints = _optional(extensions, x509.BasicConstraints)
        usage = _optional(extensions, x509.KeyUsage)
        purposes = _optional(extensions, x509.ExtendedKeyUsage)
    except _MALFORMED:
        raise Unauthorized("the attested document's signer certificate is malformed") from None
    if not any(metadata_service_name(n) for n in names):
        raise Unauthorized(
            f"the attested document's signer {signer.subject.rfc4514_string()!r} is not"
            " Azure's metadata service"
        )
    if constraints is not None and constraints.ca:
        raise Unauthorized("the attested document's signer certificate is a CA certificate")
    if usage is not None and not usage.digital_signature:
        raise Unauthorized("the attested document's signer certificate may not sign")
    if purposes is not None and ExtendedKeyUsageOID.SERVER_AUTH not in purposes:
        raise Unauthorized("the attested document's signer is not a TLS server certificate")


def _optional(extensions: x509.Extensions, kind: type[Any]) -> Any:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _document_time(stamp: Mapping[str, Any], key: str) -> datetime:
    value = stamp.get(key)
    if not isinstance(value, str) or not _DOCUMENT_TIME.fullmatch(value):
        raise Unauthorized(f"the attested document's timeStamp.{key} is not a time")
    try:
        return datetime.strptime(value, _DOCUMENT_TIME_FORMAT).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unauthorized(f"the attested document's timeStamp.{key} is not a time") from None


@attrs.frozen
class AttestedDocument:
    """An attested document whose signature and signer have been verified."""

    nonce: str
    subscription_id: str
    vm_id: str
    created: datetime
    expires: datetime
    #: The certificates from the signer to the root it chains to.
    path: tuple[x509.Certificate, ...]
    #: The document as it was signed.
    content: bytes


def _read_content(content: bytes) -> Mapping[str, Any]:
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Unauthorized("the attested document is not JSON") from None
    if not isinstance(document, Mapping):
        raise Unauthorized("the attested document is not a JSON object")
    return document


def verify_attested_document(
    der: bytes,
    *,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    now: datetime,
    fetcher: IntermediateFetcher | None = None,
) -> AttestedDocument:
    """Verify an attested document (DER SignedData) at *now*: its signer's certificate,
    embedded, chains to one of *roots* through *intermediates* (and any other certificate
    it embeds) and is Azure's metadata service's; the signature verifies; the content is
    a document of the form Azure makes that has not expired and was not made in the
    future. Its nonce is returned, not judged. Unauthorized (BadRequest for a SignedData
    that cannot be read) otherwise. With a *fetcher*, a signer that does not chain has
    the intermediates its AIA names fetched (:meth:`IntermediateFetcher.chain`)."""
    signed = read_signed_data(der)
    signer = signed.signer_certificate()
    if signer is None:
        raise Unauthorized("the attested document does not embed its signer's certificate")
    if signed.digest_algorithm == "sha1":
        raise Unauthorized("the attested document is signed with SHA-1")
    learned = fetcher.learned if fetcher is not None else ()
    pool = [*intermediates, *learned, *(c for c in signed.certificates if c != signer)]
    try:
        path = chain_to_root(signer, pool, roots, now)
    except Unauthorized as refused:
        if fetcher is None or not _valid_at(signer, now):
            raise
        path = fetcher.chain(signer, pool, roots, now, refused)
    _check_signer(signer)
    try:
        key = signer.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Unauthorized("the attested document's signer key cannot be read") from None
    signed.verify(key)
    document = _read_content(signed.content)
    nonce = document.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_CHARS:
        raise Unauthorized("the attested document has no nonce")
    subscription = _guid(document.get("subscriptionId"))
    if subscription is None:
        raise Unauthorized("the attested document's subscriptionId is not a GUID")
    vm_id = _guid(document.get("vmId"))
    if vm_id is None:
        raise Unauthorized("the attested document's vmId is not a GUID")
    stamp = document.get("timeStamp")
    if not isinstance(stamp, Mapping):
        raise Unauthorized("the attested document has no timeStamp")
    created = _document_time(stamp, "createdOn")
    expires = _document_time(stamp, "expiresOn")
    if created > now + LEEWAY:
        raise Unauthorized(f"the attested document was made in the future ({created.isoformat()})")
    if expires <= now - LEEWAY:
        raise Unauthorized(f"the attested document expired at {expires.isoformat()}")
    if expires <= created:
        raise Unauthorized("the attested document expires before it was made")
    return AttestedDocument(
        nonce=nonce,
        subscription_id=subscription,
        vm_id=vm_id,
        created=created,
        expires=expires,
        path=tuple(path),
        content=signed.content,
    )


def _decode_attested(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise Unauthorized("the Azure evidence has no attested document (attested)")
    if len(value) > MAX_ATTESTED_CHARS:
        raise Unauthorized("the Azure evidence's attested document is too large")
    try:
        return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("the Azure evidence's attested document is not base64") from None


# --- the managed-identity token ------------------------------------------------------------


@attrs.frozen
class VirtualMachine:
    """The virtual machine a managed-identity token's ``xms_mirid`` names."""

    resource_id: str
    subscription: str
    resource_group: str
    name: str

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> VirtualMachine:
        mirid = claims.get("xms_mirid")
        if not isinstance(mirid, str) or not mirid:
            raise Unauthorized("the access token has no xms_mirid claim (not a managed identity)")
        found = _VM_RESOURCE_ID.fullmatch(mirid)
        subscription = _guid(found.group("subscription")) if found else None
        if found is None or subscription is None:
            raise Forbidden(
                f"the access token's identity {mirid[:300]!r} is not a virtual machine's"
                " system-assigned identity"
            )
        return cls(
            resource_id=mirid,
            subscription=subscription,
            resource_group=found.group("group"),
            name=found.group("name"),
        )

    def sans(self) -> tuple[SAN, ...]:
        return (SAN.parse(instance_uri(self.subscription, self.resource_group, self.name)),)


class AzureProvisioner(Provisioner):
    """Signs for an Azure virtual machine Azure vouches for (see the module docstring)."""

    type_name: ClassVar[str] = "Azure"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        tenant_id: str,
        resource: str,
        remote_keys: RemoteKeys | None,
        subscriptions: frozenset[str] = frozenset(),
        resource_groups: frozenset[str] = frozenset(),
        attested_document: bool = True,
        roots: Sequence[x509.Certificate] | None = None,
        intermediates: Sequence[x509.Certificate] = (),
        fetch_intermediates: bool = True,
        intermediate_hosts: Iterable[str] = DEFAULT_INTERMEDIATE_HOSTS,
        trust_on_first_use: bool = True,
        jwks_url: str = DEFAULT_JWKS_URL,
        token_issuer: str | None = None,
        key_refresh_interval: timedelta = timedelta(minutes=1),
        allowed_names: NamePatterns = NO_PATTERNS,
        durations: DurationLimits = DEFAULT_DURATIONS,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        ekus: tuple[Any, ...] = DEFAULT_EKUS,
        allow_renewal: bool = True,
    ) -> None:
        tenant = _guid(tenant_id)
        if tenant is None:
            raise ConfigurationError(f"provisioner {name!r}: tenant_id must be a GUID")
        if not resource:
            raise ConfigurationError(f"provisioner {name!r}: resource must be set")
        self.name = name
        self.issuer = issuer
        self.tenant_id = tenant
        self.resource = resource
        self.remote_keys = remote_keys
        self.subscriptions = frozenset(s.lower() for s in subscriptions)
        self.resource_groups = frozenset(g.lower() for g in resource_groups)
        self.attested_document = attested_document
        self.roots = check_roots(
            list(bundled_roots() if roots is None else roots), f"provisioner {name!r}"
        )
        self.intermediates = (*intermediates, *bundled_intermediates())
        self.fetch_intermediates = fetch_intermediates
        self.intermediate_hosts = frozenset(h.lower() for h in intermediate_hosts)
        self._fetcher: IntermediateFetcher | None = None
        if fetch_intermediates and remote_keys is not None:
            self._fetcher = IntermediateFetcher(remote_keys, self.intermediate_hosts)
        self.trust_on_first_use = trust_on_first_use
        self.jwks_url = jwks_url
        self.token_issuer = token_issuer or f"https://sts.windows.net/{tenant}/"
        self.key_refresh_interval = key_refresh_interval
        self.allowed_names = allowed_names
        self.durations = durations
        self.key_types = key_types
        self.ekus = parse_ekus(list(ekus), f"provisioner {name!r}")
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> AzureProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        if "#" in name:
            raise ConfigurationError(f"{where}: an Azure provisioner's name may not contain '#'")
        tenant_id = opts.string("tenant_id")
        if _guid(tenant_id) is None:
            raise ConfigurationError(f"{where}: tenant_id must be the tenant's GUID")
        resource = opts.string("resource")
        subscriptions = opts.strings("subscriptions")
        bad = [s for s in subscriptions if _guid(s) is None]
        if bad:
            raise ConfigurationError(f"{where}: subscriptions: {bad[0]!r} is not a GUID")
        jwks_url = opts.string("jwks_url", DEFAULT_JWKS_URL)
        problem = url_problem(jwks_url)
        if problem is not None:
            raise ConfigurationError(f"{where}: jwks_url: {problem}")
        refresh = opts.duration("key_refresh_interval", "1m")
        if not timedelta(seconds=1) <= refresh <= timedelta(hours=1):
            raise ConfigurationError(f"{where}: key_refresh_interval must be between 1s and 1h")
        durations = opts.durations(DEFAULT_DURATIONS)
        if durations.maximum > MAX_DURATION:
            raise ConfigurationError(f"{where}: durations.max may be at most 30d")
        roots: tuple[x509.Certificate, ...] | None = None
        if opts.get("roots") is not None:
            roots = _load_certificates(env.data_dir, opts.strings("roots"), f"{where}: roots")
            if not roots:
                raise ConfigurationError(f"{where}: roots must list PEM files of root certificates")
        intermediates = _load_certificates(
            env.data_dir, opts.strings("intermediates"), f"{where}: intermediates"
        )
        _intermediates(intermediates, f"{where}: intermediates")
        hosts: tuple[str, ...] = DEFAULT_INTERMEDIATE_HOSTS
        if opts.get("intermediate_hosts") is not None:
            hosts = opts.strings("intermediate_hosts")
            bad = [h for h in hosts if not _host_name(h)]
            if bad:
                raise ConfigurationError(
                    f"{where}: intermediate_hosts: {bad[0]!r} is not a host name or IP address"
                    " (no scheme, port or path)"
                )
        token_issuer = opts.get("token_issuer")
        if token_issuer is not None and (not isinstance(token_issuer, str) or not token_issuer):
            raise ConfigurationError(f"{where}: option 'token_issuer' must be a non-empty string")
        provisioner = cls(
            name=name,
            issuer=opts.issuer(env.issuers),
            tenant_id=tenant_id,
            resource=resource,
            remote_keys=env.remote_keys,
            subscriptions=frozenset(subscriptions),
            resource_groups=frozenset(opts.strings("resource_groups")),
            attested_document=opts.boolean("attested_document", True),
            roots=roots,
            intermediates=intermediates,
            fetch_intermediates=opts.boolean("fetch_intermediates", True),
            intermediate_hosts=hosts,
            trust_on_first_use=opts.boolean("trust_on_first_use", True),
            jwks_url=jwks_url,
            token_issuer=token_issuer,
            key_refresh_interval=refresh,
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

    def public_view(self) -> dict[str, Any]:
        """What a virtual machine needs to ask IMDS for its evidence (never the
        allow-lists nor the tenant)."""
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "cloud": CLOUD,
            "resource": self.resource,
            "attestedDocument": self.attested_document,
            "durations": durations_view(self.durations),
        }

    # --- credentials ---------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """An instance identity request with an ``"azure"`` member, addressed to the
        provisioner its ``aud`` fragment names; None for anything else."""
        return read_identity_request(text, CLOUD)

    # --- authorization -------------------------------------------------------------------

    def _token_claims(self, token: Any) -> dict[str, Any]:
        """The managed-identity token's claims once its signature verifies with one of
        Entra ID's keys and it is addressed to this CA's resource in this tenant."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("the Azure evidence has no managed-identity access_token")
        if len(token) > MAX_ACCESS_TOKEN_CHARS:
            raise Unauthorized("the Azure evidence's access_token is too large")
        claims = verify_remote_token(
            jose_token(token),
            self.remote_keys,
            algorithms=(ALGORITHM,),
            refresh_interval=self.key_refresh_interval,
            what="access token",
            whose="Entra ID's signing keys",
            provisioner=self.name,
            jwks_uri=self.jwks_url,
        )
        if claims.get("iss") != self.token_issuer:
            raise Unauthorized(
                f"access token issuer {claims.get('iss')!r} is not {self.token_issuer!r}"
            )
        if claims.get("aud") != self.resource:
            raise Unauthorized(
                f"access token audience {claims.get('aud')!r} is not this CA's resource"
                f" {self.resource!r}"
            )
        if _guid(claims.get("tid")) != self.tenant_id:
            raise Unauthorized(
                f"access token tenant {claims.get('tid')!r} is not tenant {self.tenant_id}"
            )
        return claims

    def _attested(
        self, evidence: Mapping[str, Any], request: IdentityRequest, csr: CSRInfo, now: datetime
    ) -> AttestedDocument:
        der = _decode_attested(evidence.get("attested"))
        document = verify_attested_document(
            der, roots=self.roots, intermediates=self.intermediates, now=now, fetcher=self._fetcher
        )
        spki = csr.spki or csr.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        expected = instance_nonce(spki, request.audience)
        if document.nonce != expected:
            raise Unauthorized(
                f"the attested document's nonce {document.nonce!r} is not {expected!r}, the"
                " nonce of this CSR's key and this provisioner"
            )
        return document

    def _check_machine(self, machine: VirtualMachine) -> None:
        if self.subscriptions and machine.subscription not in self.subscriptions:
            raise Forbidden(
                f"subscription {machine.subscription} is not one provisioner {self.name!r} admits"
            )
        if self.resource_groups and machine.resource_group.lower() not in self.resource_groups:
            raise Forbidden(
                f"resource group {machine.resource_group!r} is not one provisioner"
                f" {self.name!r} admits"
            )

    def _names(self, own: tuple[SAN, ...], vm_name: str, csr: CSRInfo) -> tuple[SAN, ...]:
        """The machine's names and the CSR's extra names ``allowed_names`` admits."""
        return instance_names(own, csr, self.allowed_names, f"virtual machine {vm_name!r}")

    def _token_use(
        self,
        machine: VirtualMachine,
        document: AttestedDocument | None,
        access_token: str,
        token_expires: datetime,
        now: datetime,
    ) -> TokenUse:
        if self.trust_on_first_use:
            key = document.vm_id if document is not None else machine.resource_id.lower()
            return first_use(self.name, key, now)
        if document is not None:
            return TokenUse(
                provisioner=self.name,
                token_id=sha256_token_id(document.content),
                expires_at=document.expires + LEEWAY,
            )
        return TokenUse(
            provisioner=self.name,
            token_id=sha256_token_id(access_token),
            expires_at=token_expires + LEEWAY,
        )

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        request = verify_identity_request(credential, csr, ctx, provisioner=self.name, cloud=CLOUD)
        evidence = request.evidence
        access_token = evidence.get("access_token")
        claims = self._token_claims(access_token)
        assert isinstance(access_token, str)
        times = check_token_times(claims, now=ctx.now, max_lifetime=MAX_TOKEN_LIFETIME)
        machine = VirtualMachine.from_claims(claims)
        document: AttestedDocument | None = None
        if self.attested_document:
            document = self._attested(evidence, request, csr, ctx.now)
            if document.subscription_id != machine.subscription:
                raise Unauthorized(
                    f"the attested document's subscription {document.subscription_id} is not"
                    f" the access token's ({machine.subscription})"
                )
        self._check_machine(machine)
        own = machine.sans()
        if document is not None:
            own = (*own, SAN.parse("urn:uuid:" + document.vm_id))
        sans = self._names(own, machine.name, csr)
        use = self._token_use(machine, document, access_token, times.expires_at, ctx.now)
        evidence_view: dict[str, Any] = {
            "method": "azure-instance-identity",
            "tenant": self.tenant_id,
            "subscription": machine.subscription,
            "resource_group": machine.resource_group.lower(),
            "vm_name": machine.name,
            "resource_id": machine.resource_id,
            "attested_document": document is not None,
            "token": use.token_id,
        }
        if document is not None:
            evidence_view["vm_id"] = document.vm_id
        policy = instance_policy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            key_types=self.key_types,
            ekus=self.ekus,
            common_name=machine.name,
            sans=sans,
            evidence=evidence_view,
        )
        return Authorization(policy=policy, token=use)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Renewal by the certificate's key (the default): with trust on first use it is
        how a virtual machine keeps its identity, since its next evidence gets no
        certificate."""
        if not self.allow_renewal:
            raise Forbidden(f"provisioner {self.name!r} does not renew certificates")
        return RenewAuthorization(checked={"allow_renewal": True})


__all__ = [
    "DEFAULT_DURATIONS",
    "DEFAULT_INTERMEDIATE_HOSTS",
    "AttestedDocument",
    "AzureProvisioner",
    "IntermediateFetcher",
    "VirtualMachine",
    "bundled_intermediates",
    "bundled_roots",
    "ca_issuers",
    "chain_to_root",
    "instance_uri",
    "metadata_service_name",
    "verify_attested_document",
]
