"""Errors raised by the TPM module.

They join the engine's one error tree as :class:`~engine.errors.BadRequest`
(a peer sent TPM data we refuse), and stay ``ValueError`` so that code which
treats any bad value alike keeps working. No error message ever includes a
secret, a seed or an expected HMAC.
"""

from __future__ import annotations

from ..errors import BadRequest


class TPMError(BadRequest, ValueError):
    """Base of every error raised under ``engine.tpm``."""


class TPMFormatError(TPMError):
    """A TPM structure is malformed: truncated, oversized, trailing bytes, bad value."""


class TPMUnsupportedError(TPMError):
    """A well-formed structure uses an algorithm, curve or type this engine does not handle."""


class TPMSignatureError(TPMError):
    """A TPMT_SIGNATURE does not verify, or does not fit the key that should have made it."""


class TPMPolicyError(TPMError):
    """Well-formed, verifiable TPM evidence that our policy refuses (weak hash, weak key,
    wrong attributes, a Name or digest that does not match)."""
