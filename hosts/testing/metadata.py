"""Loopback imitations of the clouds' instance metadata servers, for tests and the docs.

Each server listens on 127.0.0.1 only, in a thread of the caller, signs with keys of its
own and states the facts of an instance that may be replaced while it serves::

    with GCPMetadataServer(GCPInstance(instance_id="42", instance_name="web-1")) as server:
        run(f"devid ca certificate web-1 web.crt web.key --provisioner gcp"
            f" --metadata-url {server.url} ...")
        server.instance = GCPInstance(instance_id="43")   # another instance from now on

:class:`GCPMetadataServer` answers as Google Compute Engine's metadata server does for
what devid uses of it:

- ``GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=A``
  (``&format=full``): the instance identity token, a JWT for audience ``A`` signed
  RS256 with the server's own RSA-2048 key (``kid`` in its header), with iss
  ``https://accounts.google.com``, azp and sub the service account's unique id, email
  and email_verified, iat, exp an hour later, and with ``format=full`` the
  ``google.compute_engine`` claims of :class:`GCPInstance`;
- ``GET /computeMetadata/v1/instance/id``, ``.../name``, ``.../zone`` and
  ``/computeMetadata/v1/project/project-id``: the instance's facts, as text;
- ``GET /oauth2/v3/certs``: the JWK set with the public key, what a GCP provisioner's
  ``jwks_url`` points at in tests in place of Google's.

A metadata path answers only a request with the header ``Metadata-Flavor: Google``
(403 without, as GCE does), and every answer carries that header.

:class:`AWSMetadataServer` answers as EC2's instance metadata service does with IMDSv2
only:

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: N`` (1 to
  21600; 400 without or out of range): a session token valid for N seconds;
- ``GET /latest/dynamic/instance-identity/document``: the instance identity document of
  :class:`AWSInstance`, pretty-printed as EC2 prints it; ``.../signature``: its
  RSA-SHA256 signature (PKCS#1 v1.5), base64 in lines of 64; ``.../pkcs7``: a CMS
  SignedData over it (DSA with SHA-1, signed attributes, no certificate embedded), base64
  in lines of 64 without PEM armour; ``.../rsa2048``: the same with RSA-2048 and SHA-256.

Every GET needs a valid ``X-aws-ec2-metadata-token`` (401 otherwise), and a request with
``X-Forwarded-For`` is refused (403), as EC2 refuses one that went through a proxy.
Each form is signed with a key of its own, and :meth:`AWSMetadataServer.certificate_file`
writes the certificate of that key in the format of the AWS provisioner's
``certificates`` files (``# certificate for <region>`` before the PEM).

:class:`AzureMetadataServer` answers as Azure's instance metadata service does:

- ``GET /metadata/identity/oauth2/token?api-version=V&resource=R``: the managed
  identity's access token for R, a JWT signed RS256 (``kid``) with the claims of a VM's
  system-assigned identity (:class:`AzureInstance`), in Azure's JSON answer;
- ``GET /metadata/attested/document?api-version=V&nonce=N``: the attested data, a CMS
  SignedData signed as Azure signs it (no signed attributes, the digest algorithm named
  by the OID of sha256WithRSAEncryption, the signer certificate for
  ``metadata.azure.com`` embedded), chained to a test root through an intermediate
  (:meth:`~AzureMetadataServer.roots_file`, :meth:`~AzureMetadataServer.intermediates_file`);
- ``GET /common/discovery/keys``: the JWK set of the token key, for an Azure
  provisioner's ``jwks_url``;
- ``GET /pki/<name>.crt`` (with ``aia=True``): the DER of an intermediate CA, at the
  URL the AIA caIssuers of the certificate it issued names; with ``middle_ca=True`` the
  chain is Microsoft's shape, root → ``devid Test TLS RSA Root G2`` → issuing CA →
  signer (:attr:`~AzureMetadataServer.pki_requests` records what was fetched).

The metadata paths answer only a request with ``Metadata: true`` (400 otherwise) and an
``api-version``.

``python -m hosts.testing.metadata --cloud gcp|aws|azure`` runs one in the foreground
(the docs' examples) and prints what to point the CA's configuration at.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import attrs
from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from engine.jose import jwk_from_public_key, sign_compact

from .ports import LOOPBACK

GOOGLE_ISSUER = "https://accounts.google.com"
IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
JWKS_PATH = "/oauth2/v3/certs"
#: How long Google's identity tokens are valid.
TOKEN_LIFETIME = timedelta(hours=1)
#: How often the serving thread looks for a stop, in seconds (stopping waits this long).
POLL_INTERVAL = 0.05
#: The most of a request body a server reads.
MAX_BODY = 4096


# --- serving, for every cloud -----------------------------------------------------------------


@attrs.frozen
class _Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Message


#: An answer: status, headers, body.
_Reply = tuple[int, dict[str, str], bytes]


class _LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread of its own; a subclass answers requests."""

    #: The ``Server`` header of every answer.
    server_header = "Metadata Server"

    def __init__(self, port: int, name: str) -> None:
        self._name = name
        self._httpd = _Server((LOOPBACK, port), _Handler)
        self._httpd.metadata = self
        self._thread: threading.Thread | None = None

    def respond(self, request: _Request) -> _Reply:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The metadata server's URL (``--metadata-url``), without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name=self._name,
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    metadata: _LoopbackServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    sys_version = ""

    def version_string(self) -> str:
        return self.server.metadata.server_header

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and 0 < int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        parts = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
        )
        status, headers, body = self.server.metadata.respond(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the answers, not a log."""


def _system_now() -> datetime:
    return datetime.now(UTC)


# --- GCP ----------------------------------------------------------------------------------------


@attrs.frozen
class GCPInstance:
    """The facts of one GCE instance, as its identity token states them."""

    project_id: str = "my-project"
    project_number: int = 123456789012
    zone: str = "europe-west1-b"
    instance_id: str = "4520716384629103847"
    instance_name: str = "web-1"
    #: When the instance was created; None: a minute before each token is minted.
    created_at: datetime | None = None
    service_account_email: str = "web@my-project.iam.gserviceaccount.com"
    #: The service account's unique id (the token's azp and sub).
    service_account_id: str = "104938572610384756102"

    def compute_engine(self, now: datetime) -> dict[str, Any]:
        """The ``google.compute_engine`` claim of a ``format=full`` token minted at *now*."""
        created = self.created_at if self.created_at is not None else now - timedelta(minutes=1)
        return {
            "instance_creation_timestamp": int(created.timestamp()),
            "instance_id": self.instance_id,
            "instance_name": self.instance_name,
            "project_id": self.project_id,
            "project_number": self.project_number,
            "zone": self.zone,
        }


class GCPMetadataServer(_LoopbackServer):
    """GCE's metadata server and Google's JWK set on 127.0.0.1 (see the module's text).

    *instance* may be replaced while it serves; *now* (default: the system clock) dates
    the tokens. :meth:`token` mints one without a request.
    """

    server_header = "Metadata Server for VM"

    def __init__(
        self,
        instance: GCPInstance | None = None,
        *,
        port: int = 0,
        issuer: str = GOOGLE_ISSUER,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.instance = instance if instance is not None else GCPInstance()
        self.issuer = issuer
        self._now: Callable[[], datetime] = now if now is not None else _system_now
        self._lock = threading.Lock()
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate_key()
        #: The audiences asked for, in order (for tests to check what a client sent).
        self.audiences: list[str] = []
        super().__init__(port, "gcp-metadata")

    # --- keys and tokens ----------------------------------------------------------------------

    def rotate_key(self) -> str:
        """Sign with a new RSA-2048 key from now on (the JWK set keeps the old one too, as
        Google's does while its tokens are valid); its kid."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = secrets.token_hex(20)
        with self._lock:
            self._keys.insert(0, (kid, key))
        return kid

    @property
    def kid(self) -> str:
        """The kid of the key tokens are signed with now."""
        with self._lock:
            return self._keys[0][0]

    def jwks(self) -> dict[str, Any]:
        """The JWK set ``/oauth2/v3/certs`` serves."""
        with self._lock:
            keys = list(self._keys)
        return {
            "keys": [
                {**jwk_from_public_key(key.public_key()), "alg": "RS256", "use": "sig", "kid": kid}
                for kid, key in keys
            ]
        }

    def claims(
        self, audience: str, *, full: bool = True, instance: GCPInstance | None = None
    ) -> dict[str, Any]:
        """The claims of an identity token for *audience* minted now."""
        facts = instance if instance is not None else self.instance
        now = self._now()
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": facts.service_account_id,
            "email": facts.service_account_email,
            "email_verified": True,
            "exp": int((now + TOKEN_LIFETIME).timestamp()),
            "iat": int(now.timestamp()),
            "iss": self.issuer,
            "sub": facts.service_account_id,
        }
        if full:
            claims["google"] = {"compute_engine": facts.compute_engine(now)}
        return claims

    def token(
        self,
        audience: str,
        *,
        full: bool = True,
        instance: GCPInstance | None = None,
        **overrides: Any,
    ) -> str:
        """An identity token for *audience*, as the metadata server answers it; *overrides*
        replace claims (None removes one)."""
        claims = self.claims(audience, full=full, instance=instance)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        with self._lock:
            kid, key = self._keys[0]
        return sign_compact(claims, key, alg="RS256", headers={"kid": kid})

    # --- serving ------------------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        """The URL of the JWK set, for a GCP provisioner's ``jwks_url``."""
        return self.url + JWKS_PATH

    def respond(self, request: _Request) -> _Reply:
        if request.method != "GET":
            status, content_type, body = 405, "text/plain", b"Method Not Allowed\n"
        else:
            status, content_type, body = self.answer(
                request.path, request.query, request.headers.get("Metadata-Flavor")
            )
        return status, {"Metadata-Flavor": "Google", "Content-Type": content_type}, body

    def answer(self, path: str, query: Mapping[str, list[str]], flavor: str | None) -> _Answer:
        """The status, content type and body for ``GET path?query``."""
        if path == JWKS_PATH:
            return 200, "application/json", json.dumps(self.jwks()).encode()
        if not path.startswith("/computeMetadata/"):
            return 404, "text/plain", b"Not Found\n"
        if flavor != "Google":
            return 403, "text/plain", b"Missing required header: Metadata-Flavor\n"
        if path == IDENTITY_PATH:
            audience = (query.get("audience") or [""])[0]
            if not audience:
                return 400, "text/plain", b"non-empty audience parameter required\n"
            full = (query.get("format") or ["standard"])[0] == "full"
            with self._lock:
                self.audiences.append(audience)
            return 200, "text/html", self.token(audience, full=full).encode()
        facts = self.instance
        text = {
            "/computeMetadata/v1/instance/id": facts.instance_id,
            "/computeMetadata/v1/instance/name": facts.instance_name,
            "/computeMetadata/v1/instance/zone": (
                f"projects/{facts.project_number}/zones/{facts.zone}"
            ),
            "/computeMetadata/v1/project/project-id": facts.project_id,
        }.get(path)
        if text is None:
            return 404, "text/plain", b"Not Found\n"
        return 200, "application/text", text.encode()


_Answer = tuple[int, str, bytes]


# --- AWS ----------------------------------------------------------------------------------------

AWS_TOKEN_PATH = "/latest/api/token"
AWS_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
AWS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
AWS_IDENTITY_PATH = "/latest/dynamic/instance-identity/"
#: The longest session token IMDSv2 gives, in seconds.
AWS_MAX_TOKEN_TTL = 21600
#: The signed forms of the instance identity document, each at ``AWS_IDENTITY_PATH + form``.
AWS_FORMS = ("signature", "pkcs7", "rsa2048")
_AWS_ERROR = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    " <head>\n  <title>{status} - {reason}</title>\n </head>\n"
    " <body>\n  <h1>{status} - {reason}</h1>\n </body>\n</html>\n"
)


@attrs.frozen
class AWSInstance:
    """The facts of one EC2 instance, as its instance identity document states them."""

    account_id: str = "123456789012"
    region: str = "us-east-1"
    #: None: the region's zone ``a``.
    availability_zone: str | None = None
    instance_id: str = "i-0a1b2c3d4e5f67890"
    instance_type: str = "t3.micro"
    image_id: str = "ami-0abcdef1234567890"
    private_ip: str = "172.31.16.5"
    architecture: str = "x86_64"
    #: When the instance was launched; None: a minute before the server started.
    pending_time: datetime | None = None

    def document(self, launched: datetime) -> str:
        """The instance identity document, launched at *launched* unless
        :attr:`pending_time` says when, in EC2's layout (two-space indent, ``" : "``)."""
        pending = self.pending_time if self.pending_time is not None else launched
        fields: dict[str, Any] = {
            "accountId": self.account_id,
            "architecture": self.architecture,
            "availabilityZone": self.availability_zone or f"{self.region}a",
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "kernelId": None,
            "pendingTime": pending.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "privateIp": self.private_ip,
            "ramdiskId": None,
            "region": self.region,
            "version": "2017-09-30",
        }
        lines = ",\n".join(f"  {json.dumps(k)} : {json.dumps(v)}" for k, v in fields.items())
        return "{\n" + lines + "\n}"


class AWSMetadataServer(_LoopbackServer):
    """EC2's instance metadata service (IMDSv2) on 127.0.0.1 (see the module's text).

    *instance* may be replaced while it serves; *now* (default: the system clock) dates
    session tokens, signatures and certificates. Each form is signed with a key of its
    own, made when first used: RSA-2048 for ``signature`` and ``rsa2048``, DSA-1024 for
    ``pkcs7`` (as AWS's), each with a self-signed certificate
    (:meth:`certificate`, :meth:`certificate_file`).
    """

    server_header = "EC2ws"

    def __init__(
        self,
        instance: AWSInstance | None = None,
        *,
        port: int = 0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.instance = instance if instance is not None else AWSInstance()
        self._now: Callable[[], datetime] = now if now is not None else _system_now
        self._launched = self._now() - timedelta(minutes=1)
        self._lock = threading.Lock()
        self._tokens: dict[str, datetime] = {}
        self._signers: dict[str, tuple[rsa.RSAPrivateKey | dsa.DSAPrivateKey, x509.Certificate]]
        self._signers = {}
        #: The TTLs session tokens were asked for, in order.
        self.token_ttls: list[int] = []
        #: The requests answered, as (method, path, status), in order.
        self.requests: list[tuple[str, str, int]] = []
        super().__init__(port, "aws-metadata")

    # --- documents, keys and certificates -----------------------------------------------------

    def document(self, instance: AWSInstance | None = None) -> str:
        """The instance identity document served now."""
        return (instance if instance is not None else self.instance).document(self._launched)

    def _signer(self, form: str) -> tuple[rsa.RSAPrivateKey | dsa.DSAPrivateKey, x509.Certificate]:
        if form not in AWS_FORMS:
            raise ValueError(f"no form {form!r}: AWS signs the document as {', '.join(AWS_FORMS)}")
        with self._lock:
            signer = self._signers.get(form)
            if signer is None:
                key: rsa.RSAPrivateKey | dsa.DSAPrivateKey = (
                    dsa.generate_private_key(key_size=1024)
                    if form == "pkcs7"
                    else rsa.generate_private_key(public_exponent=65537, key_size=2048)
                )
                name = x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Washington State"),
                        x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon Web Services LLC"),
                    ]
                )
                certificate = _certificate(name, key, name, key, now=self._now(), ca=False)
                signer = self._signers[form] = (key, certificate)
        return signer

    def key(self, form: str) -> rsa.RSAPrivateKey | dsa.DSAPrivateKey:
        """The key *form* is signed with."""
        return self._signer(form)[0]

    def certificate(self, form: str) -> x509.Certificate:
        """The certificate of the key *form* is signed with (what the AWS provisioner's
        ``certificates.<form>`` file holds)."""
        return self._signer(form)[1]

    def certificate_file(
        self, form: str, directory: Path, *, regions: Iterable[str] | None = None
    ) -> Path:
        """Write :meth:`certificate` of *form* for *regions* (default: the instance's)
        into *directory* as ``aws-<form>.pem``, each preceded by ``# certificate for
        <region>``, the format of the AWS provisioner's ``certificates`` files; its path."""
        pem = self.certificate(form).public_bytes(Encoding.PEM).decode()
        names = list(regions) if regions is not None else [self.instance.region]
        path = Path(directory) / f"aws-{form}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"# certificate for {region}\n{pem}" for region in names))
        return path

    def sign(self, form: str, document: str | None = None) -> str:
        """*document* (default: :meth:`document`) signed in *form*, as
        ``/latest/dynamic/instance-identity/<form>`` serves it."""
        text = (document if document is not None else self.document()).encode()
        key, certificate = self._signer(form)
        if form == "signature":
            assert isinstance(key, rsa.RSAPrivateKey)
            der = key.sign(text, padding.PKCS1v15(), hashes.SHA256())
        else:
            der = _signed_data(
                text,
                key,
                certificate,
                digest="sha1" if form == "pkcs7" else "sha256",
                signed_attributes=True,
                embed_certificate=False,
                now=self._now(),
            )
        return _base64_lines(der)

    def evidence(self, form: str, *, with_document: bool = False) -> dict[str, str]:
        """The ``"aws"`` member an instance sends for *form*, as ``agent.cloud`` makes it:
        the document and its ``signature``, or the SignedData form alone (with
        *with_document*, the document too)."""
        document = self.document()
        if form == "signature":
            return {"document": document, "signature": self.sign(form, document)}
        signed = {form: self.sign(form, document)}
        return {"document": document, **signed} if with_document else signed

    # --- session tokens -----------------------------------------------------------------------

    def session_token(self, ttl: int = AWS_MAX_TOKEN_TTL) -> str:
        """A session token valid for *ttl* seconds from now, as ``PUT /latest/api/token``
        answers it."""
        token = base64.b64encode(secrets.token_bytes(42)).decode()
        with self._lock:
            self._tokens[token] = self._now() + timedelta(seconds=ttl)
        return token

    def _valid_token(self, token: str | None) -> bool:
        with self._lock:
            expires = self._tokens.get(token or "")
        return expires is not None and self._now() < expires

    # --- serving ------------------------------------------------------------------------------

    def respond(self, request: _Request) -> _Reply:
        status, body = self._answer(request)
        with self._lock:
            self.requests.append((request.method, request.path, status))
        if status != 200:
            reason = http.HTTPStatus(status).phrase
            body = _AWS_ERROR.format(status=status, reason=reason).encode()
            return status, {"Content-Type": "text/html"}, body
        return status, {"Content-Type": "text/plain"}, body

    def _answer(self, request: _Request) -> tuple[int, bytes]:
        if request.headers.get("X-Forwarded-For") is not None:
            return 403, b""
        if request.path == AWS_TOKEN_PATH:
            if request.method != "PUT":
                return 405, b""
            ttl = (request.headers.get(AWS_TTL_HEADER) or "").strip()
            if not ttl.isdigit() or not 1 <= int(ttl) <= AWS_MAX_TOKEN_TTL:
                return 400, b""
            with self._lock:
                self.token_ttls.append(int(ttl))
            return 200, self.session_token(int(ttl)).encode()
        if request.method != "GET":
            return 405, b""
        if not self._valid_token(request.headers.get(AWS_TOKEN_HEADER)):
            return 401, b""
        what = request.path.removeprefix(AWS_IDENTITY_PATH)
        if what == "document" and request.path.startswith(AWS_IDENTITY_PATH):
            return 200, self.document().encode()
        if what in AWS_FORMS and request.path.startswith(AWS_IDENTITY_PATH):
            return 200, self.sign(what).encode()
        return 404, b""


# --- Azure --------------------------------------------------------------------------------------

AZURE_TOKEN_PATH = "/metadata/identity/oauth2/token"
AZURE_ATTESTED_PATH = "/metadata/attested/document"
AZURE_JWKS_PATH = "/common/discovery/keys"
#: How long a managed identity's access token is valid.
AZURE_TOKEN_LIFETIME = timedelta(hours=24)
#: How long an attested document is valid.
AZURE_ATTESTED_LIFETIME = timedelta(hours=6)
#: The signer certificate's name, as Azure's public cloud names it.
AZURE_SIGNER_NAME = "metadata.azure.com"
#: How Azure writes the attested document's times.
AZURE_TIME_FORMAT = "%m/%d/%y %H:%M:%S -0000"
_NONCE = re.compile(r"[0-9]{10}")


@attrs.frozen
class AzureInstance:
    """The facts of one Azure VM and its system-assigned managed identity, as its access
    token and attested document state them."""

    tenant_id: str = "8a1c2f63-9b4e-4d7a-b2c5-3f6e1d0a9b84"
    subscription_id: str = "5f2d8c71-3a94-4e6b-8d0f-1c7b9e2a4d63"
    resource_group: str = "my-group"
    vm_name: str = "web-1"
    vm_id: str = "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
    #: The managed identity's object (principal) ID: the token's oid and sub.
    principal_id: str = "b7e2c5d9-4f1a-4c83-9e6d-2a0f8b3c7d15"
    #: The managed identity's client (application) ID: the token's appid.
    client_id: str = "3c9f0e4b-8d27-4a6e-b1f5-7e2d6c9a0b48"
    sku: str = "22_04-lts-gen2"
    #: The marketplace plan (``name``, ``product``, ``publisher``; empty for most images).
    plan: Mapping[str, str] = attrs.field(
        factory=lambda: {"name": "", "product": "", "publisher": ""}, hash=False
    )
    license_type: str = ""

    @property
    def resource_id(self) -> str:
        """The VM's resource ID, as the token's ``xms_mirid`` states it."""
        return (
            f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.vm_name}"
        )


class AzureMetadataServer(_LoopbackServer):
    """Azure's instance metadata service and Entra ID's JWK set on 127.0.0.1 (see the
    module's text).

    *instance* may be replaced while it serves; *now* (default: the system clock) dates
    tokens, attested documents and the certificates. *signer_name* is the DNS name of
    the attested documents' signer certificate. With *middle_ca*, the issuing CA is
    issued by a middle CA (``devid Test TLS RSA Root G2``) the root issued, as
    Microsoft's are; with *aia*, the signer and each intermediate name their issuer's
    certificate in an AIA caIssuers URL on this server (``/pki/<name>.crt``, DER).
    """

    server_header = "IMDS/150.870.65.1325"

    def __init__(
        self,
        instance: AzureInstance | None = None,
        *,
        port: int = 0,
        now: Callable[[], datetime] | None = None,
        signer_name: str = AZURE_SIGNER_NAME,
        middle_ca: bool = False,
        aia: bool = False,
    ) -> None:
        # Bound first: the AIA URLs name the port.
        super().__init__(port, "azure-metadata")
        self.instance = instance if instance is not None else AzureInstance()
        self._now: Callable[[], datetime] = now if now is not None else _system_now
        self._lock = threading.Lock()
        self._token_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = base64.urlsafe_b64encode(secrets.token_bytes(20)).decode().rstrip("=")
        moment = self._now()
        root_key, intermediate_key, signer_key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)
        )
        root_name = _cn("devid Test Azure Root CA")
        intermediate_name = _cn("devid Test Azure TLS Issuing CA 01")
        self.root = _certificate(root_name, root_key, root_name, root_key, now=moment, ca=True)
        #: The certificates ``/pki/<name>.crt`` serves, by name (with *aia*).
        self.pki: dict[str, x509.Certificate] = {}
        #: The names of the ``/pki/`` certificates fetched, in order.
        self.pki_requests: list[str] = []
        #: The middle CA between the root and the issuing CA (with *middle_ca*).
        self.middle: x509.Certificate | None = None
        parent_name, parent_key = root_name, root_key
        if middle_ca:
            middle_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            middle_name = _cn("devid Test TLS RSA Root G2")
            self.middle = _certificate(
                middle_name, middle_key, root_name, root_key, now=moment, ca=True
            )
            parent_name, parent_key = middle_name, middle_key
        self.intermediate = _certificate(
            intermediate_name,
            intermediate_key,
            parent_name,
            parent_key,
            now=moment,
            ca=True,
            aia=self._aia("middle", aia and self.middle is not None),
        )
        if aia:
            self.pki["issuing"] = self.intermediate
            if self.middle is not None:
                self.pki["middle"] = self.middle
        self.signer = _certificate(
            _cn(signer_name),
            signer_key,
            intermediate_name,
            intermediate_key,
            now=moment,
            ca=False,
            dns_name=signer_name,
            aia=self._aia("issuing", aia),
        )
        self._signer_key = signer_key
        #: The resources tokens were asked for, in order.
        self.resources: list[str] = []
        #: The nonces attested documents were asked for, in order (None: none given).
        self.nonces: list[str | None] = []

    def _aia(self, name: str, wanted: bool) -> str | None:
        return self.pki_url(name) if wanted else None

    def pki_url(self, name: str) -> str:
        """The URL ``/pki/<name>.crt`` on this server (``issuing``, ``middle``)."""
        return f"{self.url}/pki/{name}.crt"

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The intermediate CAs, the issuing CA first."""
        return (self.intermediate,) if self.middle is None else (self.intermediate, self.middle)

    # --- tokens -------------------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        """The URL of the JWK set, for an Azure provisioner's ``jwks_url``."""
        return self.url + AZURE_JWKS_PATH

    def jwks(self) -> dict[str, Any]:
        """The JWK set ``/common/discovery/keys`` serves."""
        jwk = jwk_from_public_key(self._token_key.public_key())
        return {
            "keys": [{"kty": jwk["kty"], "use": "sig", "kid": self.kid, "x5t": self.kid, **jwk}]
        }

    def issuer(self, instance: AzureInstance | None = None) -> str:
        """The tokens' ``iss``: ``https://sts.windows.net/<tenant>/``."""
        facts = instance if instance is not None else self.instance
        return f"https://sts.windows.net/{facts.tenant_id}/"

    def claims(self, resource: str, *, instance: AzureInstance | None = None) -> dict[str, Any]:
        """The claims of an access token for *resource* minted now."""
        facts = instance if instance is not None else self.instance
        issued = int(self._now().timestamp())
        issuer = self.issuer(facts)
        return {
            "aud": resource,
            "iss": issuer,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(AZURE_TOKEN_LIFETIME.total_seconds()),
            "aio": secrets.token_urlsafe(24),
            "appid": facts.client_id,
            "appidacr": "2",
            "idp": issuer,
            "idtyp": "app",
            "oid": facts.principal_id,
            "rh": secrets.token_urlsafe(24),
            "sub": facts.principal_id,
            "tid": facts.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": facts.resource_id,
        }

    def token(
        self, resource: str, *, instance: AzureInstance | None = None, **overrides: Any
    ) -> str:
        """An access token for *resource*, as the identity endpoint answers it;
        *overrides* replace claims (None removes one)."""
        claims = self.claims(resource, instance=instance)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return sign_compact(
            claims, self._token_key, alg="RS256", headers={"x5t": self.kid, "kid": self.kid}
        )

    def token_answer(self, resource: str) -> dict[str, str]:
        """The identity endpoint's JSON answer for *resource* (its numbers as strings,
        as Azure sends them)."""
        token = self.token(resource)
        now = int(self._now().timestamp())
        lifetime = str(int(AZURE_TOKEN_LIFETIME.total_seconds()))
        return {
            "access_token": token,
            "client_id": self.instance.client_id,
            "expires_in": lifetime,
            "expires_on": str(now + int(lifetime)),
            "ext_expires_in": lifetime,
            "not_before": str(now),
            "resource": resource,
            "token_type": "Bearer",
        }

    # --- attested documents -------------------------------------------------------------------

    def attested_content(
        self, nonce: str | None = None, *, instance: AzureInstance | None = None
    ) -> bytes:
        """The JSON an attested document signs, created now: *nonce*, else the time as
        Azure puts it when none is asked for (``YYYYMMDD-HHMMSS``)."""
        facts = instance if instance is not None else self.instance
        now = self._now().astimezone(UTC)
        content = {
            "licenseType": facts.license_type,
            "nonce": nonce if nonce is not None else now.strftime("%Y%m%d-%H%M%S"),
            "plan": dict(facts.plan),
            "sku": facts.sku,
            "subscriptionId": facts.subscription_id,
            "timeStamp": {
                "createdOn": now.strftime(AZURE_TIME_FORMAT),
                "expiresOn": (now + AZURE_ATTESTED_LIFETIME).strftime(AZURE_TIME_FORMAT),
            },
            "vmId": facts.vm_id,
        }
        return json.dumps(content, separators=(",", ":")).encode()

    def attested(self, nonce: str | None = None, *, content: bytes | None = None) -> str:
        """The attested document's ``signature``: base64 DER SignedData over *content*
        (default: :meth:`attested_content` for *nonce*)."""
        der = _signed_data(
            content if content is not None else self.attested_content(nonce),
            self._signer_key,
            self.signer,
            digest="sha256",
            digest_oid="1.2.840.113549.1.1.11",
            signed_attributes=False,
            embed_certificate=True,
            now=self._now(),
        )
        return base64.b64encode(der).decode()

    def roots_file(self, directory: Path) -> Path:
        """Write the test root (PEM) into *directory* as ``azure-roots.pem``; its path
        (an Azure provisioner's ``roots``)."""
        return _write_pem(Path(directory) / "azure-roots.pem", [self.root])

    def intermediates_file(self, directory: Path) -> Path:
        """Write the intermediates (PEM) into *directory* as ``azure-intermediates.pem``;
        its path (an Azure provisioner's ``intermediates``)."""
        return _write_pem(Path(directory) / "azure-intermediates.pem", list(self.intermediates))

    # --- serving ------------------------------------------------------------------------------

    def respond(self, request: _Request) -> _Reply:
        if request.path.startswith("/pki/") and request.path.endswith(".crt"):
            name = request.path[len("/pki/") : -len(".crt")]
            served = self.pki.get(name)
            if served is None or request.method != "GET":
                return 404, {"Content-Type": "text/plain"}, b"Not found"
            with self._lock:
                self.pki_requests.append(name)
            return 200, {"Content-Type": "application/pkix-cert"}, served.public_bytes(Encoding.DER)
        status, body = self._answer(request)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        return status, headers, json.dumps(body).encode()

    def _answer(self, request: _Request) -> tuple[int, Any]:
        if request.path == AZURE_JWKS_PATH:
            return (200, self.jwks()) if request.method == "GET" else (405, {})
        if request.path not in (AZURE_TOKEN_PATH, AZURE_ATTESTED_PATH):
            return 404, {"error": "Not found"}
        if request.method != "GET":
            return 405, {"error": "Method not allowed"}
        if request.headers.get("X-Forwarded-For") is not None:
            return 400, {"error": "Bad request. X-Forwarded-For header is not allowed"}
        if request.headers.get("Metadata") != "true":
            return 400, {
                "error": "invalid_request",
                "error_description": "Required metadata header not specified",
            }
        if not (request.query.get("api-version") or [""])[0]:
            return 400, {
                "error": "Bad request. api-version was not specified in the request. For more"
                " information refer to aka.ms/azureimds",
                "newest-versions": ["2023-07-01", "2021-12-13", "2021-11-15"],
            }
        if request.path == AZURE_TOKEN_PATH:
            resource = (request.query.get("resource") or [""])[0]
            if not resource:
                return 400, {
                    "error": "invalid_request",
                    "error_description": "Required audience parameter not specified",
                }
            with self._lock:
                self.resources.append(resource)
            return 200, self.token_answer(resource)
        given = request.query.get("nonce")
        nonce = given[0] if given else None
        if nonce is not None and not _NONCE.fullmatch(nonce):
            return 400, {"error": "Bad request. Nonce must be 10 digits"}
        with self._lock:
            self.nonces.append(nonce)
        return 200, {"encoding": "pkcs7", "signature": self.attested(nonce)}


# --- certificates and CMS -----------------------------------------------------------------------


def _cn(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey | dsa.DSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey | dsa.DSAPrivateKey,
    *,
    now: datetime,
    ca: bool,
    dns_name: str | None = None,
    aia: str | None = None,
) -> x509.Certificate:
    """A certificate for *key*, issued by *issuer_key*, valid from a day before *now*:
    ten years for a CA or a self-signed one, a year for another; *aia* is the URL of its
    issuer's certificate (AIA caIssuers)."""
    public = key.public_key()
    lifetime = timedelta(days=3650 if ca or issuer == subject else 365)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
    if aia is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(aia),
                    )
                ]
            ),
            critical=False,
        )
    if dns_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pem(path: Path, certificates: Iterable[x509.Certificate]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
    return path


def _base64_lines(der: bytes) -> str:
    """*der* in base64, in lines of 64 characters (as EC2 serves its signatures)."""
    text = base64.b64encode(der).decode()
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
}


def _signed_data(
    content: bytes,
    key: rsa.RSAPrivateKey | dsa.DSAPrivateKey,
    certificate: x509.Certificate,
    *,
    digest: str,
    signed_attributes: bool,
    embed_certificate: bool,
    now: datetime,
    digest_oid: str | None = None,
) -> bytes:
    """A CMS ContentInfo holding a SignedData over *content* (id-data, encapsulated) with
    one SignerInfo for *certificate*'s *key*: with *signed_attributes*, contentType,
    signingTime and messageDigest signed (DER SET OF); without, the content itself.
    *digest_oid* names the digest algorithm otherwise than by *digest*'s own OID (Azure
    names sha256WithRSAEncryption)."""
    asn1_certificate = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    algorithm = asn1_algos.DigestAlgorithm(
        {"algorithm": digest_oid or digest, "parameters": asn1_core.Null()}
    )
    hash_algorithm = _HASHES[digest]()
    to_sign = content
    attributes = None
    if signed_attributes:
        digester = hashlib.new(digest, content)
        values = [
            asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            asn1_cms.CMSAttribute(
                {
                    "type": "signing_time",
                    "values": [
                        asn1_cms.Time({"utc_time": now.astimezone(UTC).replace(microsecond=0)})
                    ],
                }
            ),
            asn1_cms.CMSAttribute({"type": "message_digest", "values": [digester.digest()]}),
        ]
        values.sort(key=lambda attribute: attribute.dump())
        attributes = asn1_cms.CMSAttributes(values)
        to_sign = attributes.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hash_algorithm)
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        signature = key.sign(to_sign, hash_algorithm)
        signature_algorithm = f"{digest}_dsa"
    signer_info: dict[str, Any] = {
        "version": "v1",
        "sid": asn1_cms.SignerIdentifier(
            {
                "issuer_and_serial_number": asn1_cms.IssuerAndSerialNumber(
                    {
                        "issuer": asn1_certificate.issuer,
                        "serial_number": asn1_certificate.serial_number,
                    }
                )
            }
        ),
        "digest_algorithm": algorithm,
        "signature_algorithm": asn1_algos.SignedDigestAlgorithm(
            {"algorithm": signature_algorithm, "parameters": asn1_core.Null()}
            if signature_algorithm == "rsassa_pkcs1v15"
            else {"algorithm": signature_algorithm}
        ),
        "signature": signature,
    }
    if attributes is not None:
        signer_info["signed_attrs"] = asn1_cms.CMSAttributes.load(to_sign)
    signed_data: dict[str, Any] = {
        "version": "v1",
        "digest_algorithms": [algorithm],
        "encap_content_info": {"content_type": "data", "content": content},
        "signer_infos": [asn1_cms.SignerInfo(signer_info)],
    }
    if embed_certificate:
        signed_data["certificates"] = [asn1_certificate]
    info = asn1_cms.ContentInfo(
        {"content_type": "signed_data", "content": asn1_cms.SignedData(signed_data)}
    )
    return bytes(info.dump())


# --- python -m hosts.testing.metadata -----------------------------------------------------------


def _gcp_server(args: argparse.Namespace) -> tuple[_LoopbackServer, list[str]]:
    defaults = GCPInstance()
    instance = GCPInstance(
        project_id=args.project_id,
        project_number=args.project_number,
        zone=args.zone,
        instance_id=args.instance_id or defaults.instance_id,
        instance_name=args.instance_name,
        service_account_email=args.service_account,
    )
    server = GCPMetadataServer(instance, port=args.port)
    return server, [f"JWK set:         {server.jwks_url}"]


def _aws_server(args: argparse.Namespace) -> tuple[_LoopbackServer, list[str]]:
    defaults = AWSInstance()
    instance = AWSInstance(
        account_id=args.account_id,
        region=args.region,
        instance_id=args.instance_id or defaults.instance_id,
        instance_type=args.instance_type,
        private_ip=args.private_ip,
    )
    server = AWSMetadataServer(instance, port=args.port)
    out = _out_directory(args)
    lines = [f"{form} certificate: {server.certificate_file(form, out)}" for form in AWS_FORMS]
    return server, lines


def _azure_server(args: argparse.Namespace) -> tuple[_LoopbackServer, list[str]]:
    defaults = AzureInstance()
    instance = AzureInstance(
        tenant_id=args.tenant_id,
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        vm_name=args.instance_name,
        vm_id=args.instance_id or defaults.vm_id,
    )
    server = AzureMetadataServer(instance, port=args.port)
    out = _out_directory(args)
    return server, [
        f"JWK set:         {server.jwks_url}",
        f"token issuer:    {server.issuer()}",
        f"roots:           {server.roots_file(out)}",
        f"intermediates:   {server.intermediates_file(out)}",
    ]


def _out_directory(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out).resolve()
    return Path(tempfile.mkdtemp(prefix=f"devid-{args.cloud}-metadata-"))


_SERVERS: dict[str, Callable[[argparse.Namespace], tuple[_LoopbackServer, list[str]]]] = {
    "gcp": _gcp_server,
    "aws": _aws_server,
    "azure": _azure_server,
}


def main(argv: list[str] | None = None) -> int:
    """``python -m hosts.testing.metadata``: serve until interrupted."""
    gcp, aws, azure = GCPInstance(), AWSInstance(), AzureInstance()
    parser = argparse.ArgumentParser(
        prog="python -m hosts.testing.metadata",
        description="A loopback imitation of a cloud's instance metadata server, for trying"
        " devid's cloud provisioners: pass --metadata-url URL to `devid ca certificate` and"
        " point the provisioner at what it prints (GCP and Azure: jwks_url; AWS: the"
        " certificates files; Azure: roots and intermediates files).",
    )
    parser.add_argument("--cloud", choices=sorted(_SERVERS), default="gcp", help="default: gcp")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="AWS, Azure: where to write the certificate files (default: a new temporary"
        " directory)",
    )
    parser.add_argument(
        "--instance-id",
        default=None,
        help=f"the instance's ID (default: GCP {gcp.instance_id}, AWS {aws.instance_id},"
        f" Azure vmId {azure.vm_id})",
    )
    parser.add_argument("--instance-name", default=gcp.instance_name, help="GCP, Azure: its name")
    group = parser.add_argument_group("GCP")
    group.add_argument("--project-id", default=gcp.project_id)
    group.add_argument("--project-number", type=int, default=gcp.project_number)
    group.add_argument("--zone", default=gcp.zone)
    group.add_argument("--service-account", default=gcp.service_account_email)
    group = parser.add_argument_group("AWS")
    group.add_argument("--account-id", default=aws.account_id)
    group.add_argument("--region", default=aws.region)
    group.add_argument("--instance-type", default=aws.instance_type)
    group.add_argument("--private-ip", default=aws.private_ip)
    group = parser.add_argument_group("Azure")
    group.add_argument("--tenant-id", default=azure.tenant_id)
    group.add_argument("--subscription-id", default=azure.subscription_id)
    group.add_argument("--resource-group", default=azure.resource_group)
    args = parser.parse_args(argv)
    server, lines = _SERVERS[args.cloud](args)
    with server:
        print(f"metadata server: {server.url}", flush=True)
        for line in lines:
            print(line, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
