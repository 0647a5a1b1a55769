"""The base URL a response may name: one of the server's own, never the Host header's.

Every URL the CA hands out (ACME directory, Location and Link headers, the JWS
``url`` a request must be signed for, token audiences) is built from the base
URLs the host configured (:class:`Endpoints`: ``[server] dns_names``
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


class Endpoints:
    """The URLs clients reach this CA by, and the token audiences built from them.

    The host sets them once it knows its address (``[server] dns_names`` and the listen
    port); a token's ``aud`` must be one of :meth:`audiences` for the path it is sent to.
    """

    def __init__(self) -> None:
        self.base_urls: tuple[str, ...] = ()
        self._audiences: dict[str, frozenset[str]] = {}

    def set_base_urls(self, urls: Sequence[str]) -> None:
        self.base_urls = tuple(u.rstrip("/") for u in urls)
        self._audiences = {}

    def audiences(self, path: str) -> frozenset[str]:
        found = self._audiences.get(path)
        if found is None:
            found = frozenset(f"{base}{path}" for base in self.base_urls)
            if len(self._audiences) < 64:  # paths are the host's own few routes
                self._audiences[path] = found
        return found

    def base_url(self, requested: str) -> str:
        """:func:`own_base_url` among this CA's base URLs."""
        return own_base_url(self.base_urls, requested)
