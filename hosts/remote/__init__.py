"""What the host fetches from elsewhere for provisioners: OpenID providers' discovery
documents and JWK sets (:mod:`plugins.remote`), over HTTPS, cached by their cache headers.

:class:`RemoteKeySets` (:mod:`.keysets`) is the host's :class:`plugins.remote.RemoteKeys`.
The package depends on the engine and :mod:`plugins.remote` only.
"""

from .keysets import RemoteKeySets

__all__ = ["RemoteKeySets"]
