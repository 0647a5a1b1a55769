"""A cloud instance's identity, fetched from its metadata server, for the CA's cloud
provisioners (``devid ca certificate --provisioner NAME`` on the instance).

Every credential is addressed to ``<CA URL>/1.0/sign#<provisioner>``
(:func:`provisioner_audience`), which the CA's provisioner requires exactly, so what an
instance fetched for one CA and provisioner is refused by any other.

- **GCP**: the instance asks its metadata server for an identity token, a JWT Google
  signs (``format=full``: with the project, zone and instance it names), for that
  audience (:func:`gcp_identity_token`). The server answers only requests that carry
  ``Metadata-Flavor: Google`` and marks its own answers with the same header; an answer
  without it did not come from a metadata server (a captive portal, a proxy) and is
  refused.
- **AWS**: the instance asks EC2's metadata service (IMDSv2: a session token first) for
  its instance identity document signed in one of its forms, the first the CA's
  provisioner lists (:func:`aws_identity_evidence`).
- **Azure**: the instance asks Azure's metadata service for its managed identity's
  access token for the provisioner's resource and, when the provisioner wants it, the
  attested document signed over :func:`~plugins.minting.instance_nonce` of the key and
  the audience (:func:`azure_identity_evidence`).

An AWS or Azure instance then sends what its cloud signed as one instance identity
request, a JWS its new key signs (:func:`~plugins.minting.mint_identity_request`);
:func:`instance_credential` builds the credential for any cloud provisioner from the
CA's view of it.

Every request is bounded (:data:`TIMEOUT` for connecting and for each read, and as much
again for the whole answer, of bounded size) and goes straight to the server, never
through a proxy from the environment nor a redirect. Tests and the docs point the client
at a loopback server (:mod:`hosts.testing.metadata`) with ``--metadata-url`` or
``$DEVID_GCP_METADATA_URL``, ``$DEVID_AWS_METADATA_URL``, ``$DEVID_AZURE_METADATA_URL``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.errors import DevidError
from plugins.minting import instance_nonce, mint_identity_request

#: The GCE metadata server, as every instance resolves it.
GCP_METADATA_URL = "http://metadata.google.internal"
#: The environment variable that points devid at another metadata server.
GCP_METADATA_ENV = "DEVID_GCP_METADATA_URL"
#: Where the instance's default service account's identity token is served.
GCP_IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
#: The header a metadata request must carry, and its answer too.
METADATA_FLAVOR = ("Metadata-Flavor", "Google")

#: EC2's instance metadata service.
AWS_METADATA_URL = "http://169.254.169.254"
#: The environment variable that points devid at another AWS metadata service.
AWS_METADATA_ENV = "DEVID_AWS_METADATA_URL"
#: Where IMDSv2 gives session tokens (PUT).
AWS_TOKEN_PATH = "/latest/api/token"
#: Where the instance identity document and its signed forms are served.
AWS_IDENTITY_PATH = "/latest/dynamic/instance-identity/"
#: The forms of the signed document devid knows.
AWS_FORMS = ("signature", "pkcs7", "rsa2048")
#: How long the session token devid asks for lives, in seconds.
AWS_TOKEN_TTL = 60

#: Azure's instance metadata service.
AZURE_METADATA_URL = "http://169.254.169.254"
#: The environment variable that points devid at another Azure metadata service.
AZURE_METADATA_ENV = "DEVID_AZURE_METADATA_URL"
#: Where the managed identity's access token is served.
AZURE_TOKEN_PATH = "/metadata/identity/oauth2/token"
AZURE_TOKEN_API_VERSION = "2018-02-01"
#: Where the attested document is served.
AZURE_ATTESTED_PATH = "/metadata/attested/document"
AZURE_ATTESTED_API_VERSION = "2020-09-01"

#: The bound on connecting to the metadata server and on each read, in seconds.
TIMEOUT = 5.0
#: The largest identity token accepted (Google's are about 1 KB).
MAX_TOKEN_BYTES = 16 * 1024
#: The largest answer accepted otherwise (documents, signatures, Azure's JSON).
MAX_ANSWER_BYTES = 64 * 1024

#: The provisioner types whose credential is fetched from the instance's metadata server.
CLOUD_TYPES = frozenset({"GCP", "AWS", "Azure"})


class CloudError(DevidError):
    """The instance's identity could not be fetched; the message says why."""


@attrs.frozen
class _Service:
    """One cloud's metadata service, as the error messages name it."""

    cloud: str
    env: str
    default_url: str

    def url(self, given: str | None) -> str:
        url = (given or os.environ.get(self.env) or self.default_url).strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CloudError(f"the metadata URL {url!r} is not an http:// or https:// URL")
        return url.rstrip("/")


_GCP = _Service("GCP", GCP_METADATA_ENV, GCP_METADATA_URL)
_AWS = _Service("AWS", AWS_METADATA_ENV, AWS_METADATA_URL)
_AZURE = _Service("Azure", AZURE_METADATA_ENV, AZURE_METADATA_URL)


def gcp_metadata_url(given: str | None = None) -> str:
    """The metadata server to ask: *given* (``--metadata-url``), else
    ``$DEVID_GCP_METADATA_URL``, else GCE's own; an http(s) URL without a trailing
    slash."""
    return _GCP.url(given)


def aws_metadata_url(given: str | None = None) -> str:
    """As :func:`gcp_metadata_url`, with ``$DEVID_AWS_METADATA_URL`` and EC2's service."""
    return _AWS.url(given)


def azure_metadata_url(given: str | None = None) -> str:
    """As :func:`gcp_metadata_url`, with ``$DEVID_AZURE_METADATA_URL`` and Azure's service."""
    return _AZURE.url(given)


def provisioner_audience(ca_url: str, provisioner: str) -> str:
    """The audience the CA's cloud provisioner *provisioner* requires of a credential:
    ``<CA URL>/1.0/sign#<provisioner>``."""
    return f"{ca_url.rstrip('/')}/1.0/sign#{provisioner}"


#: The GCP name of :func:`provisioner_audience`.
gcp_audience = provisioner_audience


# --- fetching ---------------------------------------------------------------------------------


def _client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)


def _fetch(
    http: httpx.Client,
    service: _Service,
    base: str,
    request: httpx.Request,
    *,
    limit: int,
    timeout: float,
) -> tuple[httpx.Response, bytes]:
    """Send *request*; the answer and at most *limit* + 1 bytes of its body, within
    *timeout* for each step and twice *timeout* in all. CloudError ("not on <cloud>")
    when the server does not answer."""
    deadline = time.monotonic() + 2 * timeout
    hint = f"pass --metadata-url or set ${service.env} for another"
    try:
        response = http.send(request, stream=True)
        try:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    break
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer is too slow", request=request)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise CloudError(
            f"not on {service.cloud}: the metadata server at {base} does not answer (no"
            f" answer within {timeout:g} s; {hint})"
        ) from None
    except httpx.HTTPError as exc:
        raise CloudError(
            f"not on {service.cloud}: the metadata server at {base} does not answer ({exc}; {hint})"
        ) from None
    return response, body


def _detail(status: int, body: bytes) -> str:
    """``status`` and what the body says, for an error message."""
    text = body[:200].decode("utf-8", "replace").strip()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, Mapping):
        described = answer.get("error_description") or answer.get("error")
        if isinstance(described, str):
            text = described[:200]
    return f"{status}{f': {text}' if text else ''}"


def gcp_identity_token(
    audience: str, metadata_url: str | None = None, *, timeout: float = TIMEOUT
) -> str:
    """The instance's identity token for *audience* (``format=full``) from the metadata
    server at *metadata_url* (see :func:`gcp_metadata_url`).

    Raises :class:`CloudError` when the server does not answer within *timeout*, refuses,
    or answers with something that is not a metadata server's identity token.
    """
    base = gcp_metadata_url(metadata_url)
    name, value = METADATA_FLAVOR
    with _client(timeout) as http:
        request = http.build_request(
            "GET",
            base + GCP_IDENTITY_PATH,
            params={"audience": audience, "format": "full"},
            headers={name: value},
        )
        response, body = _fetch(http, _GCP, base, request, limit=MAX_TOKEN_BYTES, timeout=timeout)
    if response.headers.get(name) != value:
        raise CloudError(
            f"{base} is not a GCP metadata server: its answer ({response.status_code}) has"
            f" no {name}: {value} header"
        )
    if response.status_code != 200:
        raise CloudError(
            f"the metadata server at {base} refused the identity token"
            f" ({_detail(response.status_code, body)})"
        )
    return _token_text(body, base)


def _token_text(body: bytes, base: str) -> str:
    """The compact JWT *body* holds, checked for shape only (the CA verifies it)."""
    if len(body) > MAX_TOKEN_BYTES:
        raise CloudError(f"the identity token from {base} is longer than {MAX_TOKEN_BYTES} bytes")
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts) or any(c.isspace() for c in token):
        raise CloudError(f"the metadata server at {base} answered something that is not a JWT")
    return token


# --- AWS --------------------------------------------------------------------------------------


def aws_identity_evidence(
    form: str, metadata_url: str | None = None, *, timeout: float = TIMEOUT
) -> dict[str, str]:
    """The instance identity document signed in *form* (``signature``, ``pkcs7``,
    ``rsa2048``) from EC2's metadata service at *metadata_url* (see
    :func:`aws_metadata_url`), through an IMDSv2 session token of
    :data:`AWS_TOKEN_TTL` seconds: the ``"aws"`` evidence of an instance identity
    request, each member as served: ``{"document": ..., "signature": ...}``, or
    ``{form: ...}`` for the SignedData forms, whose content is the document (sent apart,
    it would have to equal that content byte for byte).

    Raises :class:`CloudError` when the service does not answer within *timeout*,
    refuses, or answers with something that is not a document or its signature.
    """
    if form not in AWS_FORMS:
        raise CloudError(
            f"devid cannot fetch the AWS document's form {form!r} (it knows {', '.join(AWS_FORMS)})"
        )
    base = aws_metadata_url(metadata_url)
    with _client(timeout) as http:
        token = _aws_session_token(http, base, timeout)
        document = None
        if form == "signature":
            document = _aws_get(http, base, token, "document", timeout)
            _check_document(document, base)
        signed = _aws_get(http, base, token, form, timeout)
    try:
        if not base64.b64decode("".join(signed.split()), validate=True):
            raise ValueError("empty")
    except (ValueError, binascii.Error):
        raise CloudError(
            f"the metadata server at {base} answered a {form} that is not base64"
        ) from None
    return {form: signed} if document is None else {"document": document, form: signed}


def _check_document(document: str, base: str) -> None:
    """Refuse what is not an instance identity document (the CA checks it in full)."""
    try:
        facts = json.loads(document)
    except ValueError:
        facts = None
    if not isinstance(facts, Mapping) or not all(
        isinstance(facts.get(k), str) for k in ("instanceId", "accountId", "region")
    ):
        raise CloudError(
            f"the metadata server at {base} answered something that is not an instance"
            " identity document"
        )


def _aws_session_token(http: httpx.Client, base: str, timeout: float) -> str:
    request = http.build_request(
        "PUT",
        base + AWS_TOKEN_PATH,
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(AWS_TOKEN_TTL)},
    )
    response, body = _fetch(http, _AWS, base, request, limit=1024, timeout=timeout)
    if response.status_code != 200:
        raise CloudError(
            f"the metadata server at {base} refused an IMDSv2 session token"
            f" ({_detail(response.status_code, body)})"
        )
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(body) > 1024 or not token.isprintable() or " " in token:
        raise CloudError(
            f"the metadata server at {base} answered something that is not an IMDSv2 session token"
        )
    return token


def _aws_get(http: httpx.Client, base: str, token: str, what: str, timeout: float) -> str:
    request = http.build_request(
        "GET", base + AWS_IDENTITY_PATH + what, headers={"X-aws-ec2-metadata-token": token}
    )
    response, body = _fetch(http, _AWS, base, request, limit=MAX_ANSWER_BYTES, timeout=timeout)
    if response.status_code != 200:
        raise CloudError(
            f"the metadata server at {base} refused the instance identity {what}"
            f" ({_detail(response.status_code, body)})"
        )
    if len(body) > MAX_ANSWER_BYTES:
        raise CloudError(
            f"the instance identity {what} from {base} is longer than {MAX_ANSWER_BYTES} bytes"
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise CloudError(
            f"the metadata server at {base} answered an instance identity {what} that is not text"
        ) from None


# --- Azure ------------------------------------------------------------------------------------


def azure_identity_evidence(
    resource: str,
    nonce: str | None,
    metadata_url: str | None = None,
    *,
    timeout: float = TIMEOUT,
) -> dict[str, str]:
    """The managed identity's access token for *resource* and, with a *nonce*, the
    attested document signed over it, from Azure's metadata service at *metadata_url*
    (see :func:`azure_metadata_url`): the ``"azure"`` evidence of an instance identity
    request, ``{"access_token": ..., "attested": ...}`` (the latter the answer's
    ``signature``, base64 DER SignedData).

    Raises :class:`CloudError` when the service does not answer within *timeout*,
    refuses (a VM without a system-assigned identity), or answers with something else.
    """
    base = azure_metadata_url(metadata_url)
    with _client(timeout) as http:
        answer = _azure_get(
            http,
            base,
            AZURE_TOKEN_PATH,
            {"api-version": AZURE_TOKEN_API_VERSION, "resource": resource},
            "the managed identity's access token",
            timeout,
        )
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise CloudError(f"the metadata server at {base} answered no access_token")
        evidence = {"access_token": _token_text(token.encode(), base)}
        if nonce is None:
            return evidence
        answer = _azure_get(
            http,
            base,
            AZURE_ATTESTED_PATH,
            {"api-version": AZURE_ATTESTED_API_VERSION, "nonce": nonce},
            "the attested document",
            timeout,
        )
    signature = answer.get("signature")
    try:
        if answer.get("encoding") != "pkcs7" or not isinstance(signature, str):
            raise ValueError("not pkcs7")
        if not base64.b64decode("".join(signature.split()), validate=True):
            raise ValueError("empty")
    except (ValueError, binascii.Error):
        raise CloudError(
            f"the metadata server at {base} answered an attested document that is not base64 PKCS#7"
        ) from None
    evidence["attested"] = signature
    return evidence


def _azure_get(
    http: httpx.Client,
    base: str,
    path: str,
    params: dict[str, str],
    what: str,
    timeout: float,
) -> Mapping[str, Any]:
    request = http.build_request("GET", base + path, params=params, headers={"Metadata": "true"})
    response, body = _fetch(http, _AZURE, base, request, limit=MAX_ANSWER_BYTES, timeout=timeout)
    if response.status_code != 200:
        raise CloudError(
            f"the metadata server at {base} refused {what} ({_detail(response.status_code, body)})"
        )
    if len(body) > MAX_ANSWER_BYTES:
        raise CloudError(f"{what} from {base} is longer than {MAX_ANSWER_BYTES} bytes")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, Mapping):
        raise CloudError(
            f"the metadata server at {base} answered something that is not Azure's JSON for {what}"
        )
    return answer


# --- the credential for a provisioner ---------------------------------------------------------

_SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@attrs.frozen
class _Ask:
    """What a cloud credential is fetched for: the CA's view of the provisioner, the
    audience, the key the CSR certifies, and where and how long to ask."""

    view: Mapping[str, Any]
    audience: str
    key: CertificateIssuerPrivateKeyTypes
    metadata_url: str | None
    now: datetime
    timeout: float

    @property
    def name(self) -> str:
        return str(self.view.get("name"))

    def signing_key(self) -> _SigningKey:
        if not isinstance(self.key, _SigningKey):
            raise CloudError(
                f"an instance identity request cannot be signed with a {type(self.key).__name__}"
                " key: use an EC, Ed25519 or RSA key"
            )
        return self.key


def _gcp_credential(ask: _Ask) -> str:
    return gcp_identity_token(ask.audience, ask.metadata_url, timeout=ask.timeout)


def _aws_credential(ask: _Ask) -> str:
    forms = ask.view.get("forms")
    listed = [f for f in forms if isinstance(f, str)] if isinstance(forms, list) else []
    known = [f for f in listed if f in AWS_FORMS]
    if not known:
        raise CloudError(
            f"the CA's AWS provisioner {ask.name!r} accepts no form of the instance identity"
            f" document devid can fetch (it lists {', '.join(listed) or 'none'}; devid fetches"
            f" {', '.join(AWS_FORMS)}): its certificates need configuring on the CA"
        )
    key = ask.signing_key()
    evidence = aws_identity_evidence(known[0], ask.metadata_url, timeout=ask.timeout)
    return mint_identity_request(
        key, audience=ask.audience, cloud="aws", evidence=dict(evidence), now=ask.now
    )


def _azure_credential(ask: _Ask) -> str:
    resource = ask.view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise CloudError(f"the CA's view of the Azure provisioner {ask.name!r} names no resource")
    key = ask.signing_key()
    nonce = None
    if ask.view.get("attestedDocument") is True:
        spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        nonce = instance_nonce(spki, ask.audience)
    evidence = azure_identity_evidence(resource, nonce, ask.metadata_url, timeout=ask.timeout)
    return mint_identity_request(
        key, audience=ask.audience, cloud="azure", evidence=dict(evidence), now=ask.now
    )


#: How each cloud provisioner type's credential is made.
_CREDENTIALS: dict[str, Callable[[_Ask], str]] = {
    "GCP": _gcp_credential,
    "AWS": _aws_credential,
    "Azure": _azure_credential,
}


def instance_credential(
    view: Mapping[str, Any],
    ca_url: str,
    key: CertificateIssuerPrivateKeyTypes,
    metadata_url: str | None = None,
    *,
    now: datetime | None = None,
    timeout: float = TIMEOUT,
) -> str:
    """The ``ott`` for the CA at *ca_url*'s cloud provisioner whose public view
    (``GET /provisioners``) is *view*, for a CSR certifying *key*: GCP's identity token
    for :func:`provisioner_audience`, or an AWS or Azure instance identity request signed
    by *key* (dated *now*, default the system clock) carrying what the metadata service
    at *metadata_url* signed: the first form the AWS provisioner lists; the access token
    for the Azure provisioner's resource and, if it wants the attested document, the
    document signed over the :func:`~plugins.minting.instance_nonce` of *key* and the
    audience.

    Raises :class:`CloudError` when the view is not a cloud provisioner's or the
    instance's identity cannot be fetched.
    """
    kind = view.get("type")
    make = _CREDENTIALS.get(kind) if isinstance(kind, str) else None
    if make is None:
        raise CloudError(f"provisioner {view.get('name')!r} of type {kind!r} is not a cloud's")
    ask = _Ask(
        view=view,
        audience=provisioner_audience(ca_url, str(view.get("name"))),
        key=key,
        metadata_url=metadata_url,
        now=now if now is not None else datetime.now(UTC),
        timeout=timeout,
    )
    return make(ask)
