"""ACME (RFC 8555) on the CA: the server's state, its operations, device-attest-01 and
the background validation of network challenges. The wire (JWS over HTTP, problem
documents, headers) is the HTTP layer's: ``hosts.http.acme``."""

from __future__ import annotations

from .service import ACMEService
from .state import ACMEPost

__all__ = ["ACMEPost", "ACMEService"]
