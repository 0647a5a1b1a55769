"""A cloud instance's identity, fetched from its metadata server, for the CA's cloud
provisioners (``devid ca certificate --provisioner NAME`` on the instance).

On Google Compute Engine the instance asks its metadata server for an identity token:
a JWT Google signs (``format=full``: with the project, zone and instance it names),
for an audience the client chooses. devid asks for ``<CA URL>/1.0/sign#<provisioner>``
(:func:`gcp_audience`), which the CA's GCP provisioner requires exactly, so a token
fetched for one CA and provisioner is refused by any other.

The metadata server answers only requests that carry ``Metadata-Flavor: Google``, and
marks its own answers with the same header; an answer without it did not come from a
metadata server (a captive portal, a proxy) and is refused. Every request is bounded
(:data:`TIMEOUT`) and goes straight to the server, never through a proxy from the
environment. Tests and the docs point it at a loopback server
(:mod:`hosts.testing.metadata`) with ``--metadata-url`` or ``$DEVID_GCP_METADATA_URL``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx

from engine.errors import DevidError

#: The GCE metadata server, as every instance resolves it.
GCP_METADATA_URL = "http://metadata.google.internal"
#: The environment variable that points devid at another metadata server.
GCP_METADATA_ENV = "DEVID_GCP_METADATA_URL"
#: Where the instance's default service account's identity token is served.
GCP_IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
#: The header a metadata request must carry, and its answer too.
METADATA_FLAVOR = ("Metadata-Flavor", "Google")
#: The bound on connecting to the metadata server and on each read, in seconds.
TIMEOUT = 5.0
#: The largest identity token accepted (Google's are about 1 KB).
MAX_TOKEN_BYTES = 16 * 1024

#: The provisioner types whose credential is fetched from the instance's metadata server.
CLOUD_TYPES = frozenset({"GCP"})


class CloudError(DevidError):
    """The instance's identity could not be fetched; the message says why."""


def gcp_metadata_url(given: str | None = None) -> str:
    """The metadata server to ask: *given* (``--metadata-url``), else
    ``$DEVID_GCP_METADATA_URL``, else GCE's own; an http(s) URL without a trailing
    slash."""
    url = (given or os.environ.get(GCP_METADATA_ENV) or GCP_METADATA_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CloudError(f"the metadata URL {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def gcp_audience(ca_url: str, provisioner: str) -> str:
    """The audience the CA's GCP provisioner *provisioner* requires of a token:
    ``<CA URL>/1.0/sign#<provisioner>``."""
    return f"{ca_url.rstrip('/')}/1.0/sign#{provisioner}"


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
    try:
        with (
            httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as http,
            http.stream(
                "GET",
                base + GCP_IDENTITY_PATH,
                params={"audience": audience, "format": "full"},
                headers={name: value},
            ) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_TOKEN_BYTES:
                    break
    except httpx.TimeoutException:
        raise CloudError(
            f"not on GCP: the metadata server at {base} does not answer (no answer within"
            f" {timeout:g} s; pass --metadata-url or set ${GCP_METADATA_ENV} for another)"
        ) from None
    except httpx.HTTPError as exc:
        raise CloudError(
            f"not on GCP: the metadata server at {base} does not answer ({exc}; pass"
            f" --metadata-url or set ${GCP_METADATA_ENV} for another)"
        ) from None
    if response.headers.get(name) != value:
        raise CloudError(
            f"{base} is not a GCP metadata server: its answer ({response.status_code}) has"
            f" no {name}: {value} header"
        )
    if response.status_code != 200:
        detail = body[:200].decode("utf-8", "replace").strip()
        raise CloudError(
            f"the metadata server at {base} refused the identity token"
            f" ({response.status_code}{f': {detail}' if detail else ''})"
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
