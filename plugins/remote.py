"""Keys a provisioner needs from elsewhere: an OpenID provider's metadata and signing keys,
and the certificates of intermediate CAs a third party's certificate names (AIA).

A provisioner never fetches anything. One whose credentials are signed by a key that
lives with a third party (an OpenID provider's ID tokens, a cloud's identity tokens)
asks the host for it through :class:`RemoteKeys`, which it receives in
:class:`plugins.provisioner.ProvisionerEnvironment` (``remote_keys``). The host fetches
over HTTPS, caches what it fetched for as long as the provider's cache headers say, and
fetches a key set again when a token names a key it does not know, at most once per
``refresh_interval``; while a provider is down, the keys already known stay usable. A
certificate named by a URL (an AIA ``caIssuers`` URL, often plain ``http://``) is fetched
once and kept for a day: it is only a candidate, trusted for nothing until a provisioner
has chained it to its roots; the provisioner decides which hosts it may come from.

Every method blocks (they may fetch): the host calls ``authorize_*`` in a worker thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

from engine.jose import PublicKey

#: The discovery document of an issuer lives at the issuer's URL plus this path
#: (OpenID Connect Discovery 1.0, section 4).
DISCOVERY_PATH = "/.well-known/openid-configuration"


def url_problem(url: str) -> str | None:
    """Why *url* may not be fetched for keys, or None: it must be ``https://``, or
    ``http://`` to a loopback address (a provider on the same machine, as in tests)."""
    if not url.isascii():
        return f"{url!r} is not an ASCII URL (write an internationalised name as its A-label)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{url!r} is not a URL"
    if not host or parts.scheme not in ("https", "http"):
        return f"{url!r} is not an https:// URL"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} carries credentials"
    if parts.scheme == "http" and not _loopback(host):
        return f"{url!r} is not HTTPS (plain http:// is allowed only to a loopback address)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class OpenIDProvider:
    """The parts of an OpenID provider's discovery document devid uses.

    ``issuer`` is checked to be exactly the issuer asked for; ``jwks_uri`` is where its
    signing keys are; the endpoints are those a client uses to sign a person in (None
    where the provider offers none); ``document`` is the whole document as fetched.
    """

    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] = ()
    document: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


class RemoteKeys(Protocol):
    """The host's cache of remote key sets (see the module docstring).

    Errors are ``ProtocolError``s a provisioner may let through: ``Unauthorized`` (401)
    when a token names a key the set does not hold (after one refresh), or a key that
    does not fit its algorithm; ``ServiceUnavailable`` (503) when what is needed was
    never fetched and cannot be fetched now.

    ``certificate(url)`` is the DER of the one certificate served at *url* (``http://``
    or ``https://``; PEM is converted to DER), fetched once and cached by URL;
    ``ServiceUnavailable`` says why when it cannot be had (no answer, not a certificate,
    too large). The host checks nothing about what the certificate says, nor the URL's
    host: the caller allows hosts and verifies the certificate before relying on it.
    """

    def provider(self, issuer: str) -> OpenIDProvider:
        """The discovery document of *issuer* (``issuer`` + :data:`DISCOVERY_PATH`)."""
        ...

    def key(
        self,
        jwks_uri: str,
        kid: str | None,
        alg: str,
        *,
        refresh_interval: timedelta = timedelta(minutes=1),
    ) -> PublicKey:
        """The public key of the JWK set at *jwks_uri* with this ``kid`` that signs *alg*.

        With no *kid*, the set must hold exactly one key usable with *alg*. A *kid* the
        set does not hold has the set fetched again, unless that was done less than
        *refresh_interval* ago.
        """
        ...

    def certificate(self, url: str) -> bytes:
        """The DER of the certificate served at *url* (``http://`` or ``https://``),
        from the cache when it was fetched before; ServiceUnavailable when it cannot be
        had (a failed fetch is tried again only after a back-off)."""
        ...
