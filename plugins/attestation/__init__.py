"""Attestation-statement formats for ACME device-attest-01, each a plugin.

The built-in formats are ``tpm`` (:mod:`.tpm`), ``apple`` (:mod:`.apple`) and
``step`` (:mod:`.step`); this package registers all three through the
``devid`` entry-point group, like any third-party plugin. What they share
lives in :mod:`.common` (re-exported here): reading ``x5c``, building and
checking certificate paths, COSE algorithm identifiers, size limits, and the
one rule every format keeps: whatever is wrong with a statement becomes an
ACME ``badAttestationStatement`` problem, never another exception.

See docs/attestation-formats.md for what each format checks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from plugins.hookspecs import hookimpl

from .base import AttestationContext, AttestationFormat, AttestationResult
from .common import (
    COSE_ALGORITHMS,
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN,
    MAX_DETAIL,
    MAX_SIGNATURE_BYTES,
    MAX_TPM_STRUCTURE_BYTES,
    PROBLEM,
    CoseAlgorithm,
    bad_statement,
    certificate_sha256,
    certified_public_key,
    cose_algorithm,
    extensions_of,
    field_bytes,
    field_int,
    guarded,
    parse_x5c,
    require_end_entity,
    statement_map,
    subject_text,
    unrecognized_value,
    verify_cose_signature,
    verify_path,
)

__all__ = [
    "COSE_ALGORITHMS",
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN",
    "MAX_DETAIL",
    "MAX_SIGNATURE_BYTES",
    "MAX_TPM_STRUCTURE_BYTES",
    "PROBLEM",
    "AttestationContext",
    "AttestationFormat",
    "AttestationResult",
    "CoseAlgorithm",
    "bad_statement",
    "certificate_sha256",
    "certified_public_key",
    "cose_algorithm",
    "devid_attestation_formats",
    "extensions_of",
    "field_bytes",
    "field_int",
    "guarded",
    "parse_x5c",
    "require_end_entity",
    "statement_map",
    "subject_text",
    "unrecognized_value",
    "verify_cose_signature",
    "verify_path",
]


# --- the plugin ---------------------------------------------------------------------


@functools.cache
def _built_in_formats() -> tuple[AttestationFormat, ...]:
    """The built-in formats, made once: they hold no state (a device-attest-01 validation
    asks for them every time)."""
    from .apple import AppleFormat
    from .step import StepFormat
    from .tpm import TPMFormat

    return (TPMFormat(), AppleFormat(), StepFormat())


@hookimpl
def devid_attestation_formats() -> Sequence[AttestationFormat]:
    return list(_built_in_formats())
