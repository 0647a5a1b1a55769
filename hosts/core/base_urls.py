"""The base URL a response may name: one of the server's own, never the Host header's.

Every URL the CA hands out (ACME directory, Location and Link headers, the JWS
``url`` a request must be signed for, token audiences) is built from the base
URLs the host configured (:meth:`Authority.set_base_urls`: ``[server] dns_names``
and the listen address, with the port). The Host header only chooses among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def _hostname(url: str) -> str | None:
    try:
        name = urlsplit(url).hostname
    except ValueError:
        return None
    return name.rstrip(".").lower() if name else None


def own_base_url(configured: Sequence[str], requested: str) -> str:
    """The configured base URL whose host name is the one the request used
    (``requested``, e.g. ``https://`` + the Host header), else the first configured one.

    The answer is always one of ``configured`` (its port included, whatever port the
    Host header names), or "" when none is configured yet: URLs are then relative,
    never the client's.
    """
    if not configured:
        return ""
    wanted = _hostname(requested) if requested else None
    if wanted is not None:
        for base in configured:
            if _hostname(base) == wanted:
                return base.rstrip("/")
    return configured[0].rstrip("/")
