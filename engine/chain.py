"""Certificate path checks for the credentials devid verifies itself.

EK certificates, AK certificates and X5C chains follow profiles that
general-purpose web-PKI verifiers reject (empty subjects, critical
directoryName SANs, TCG key purposes), so devid builds and checks these paths
itself: signatures, validity at a given instant, CA constraints, and a path
length limit. Nothing here looks at host names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from .errors import Unauthorized

MAX_DEPTH = 6
# What cryptography raises for extensions it cannot read (a CA whose extensions cannot be
# read is no CA here): bad DER, an extension twice, a general name of an unknown type.
_MALFORMED_EXTENSIONS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class ChainError(Unauthorized):
    """The certificate does not chain to a trusted root."""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        # X.509 v1 roots carry no extensions; only trusted roots may be v1.
        return cert.version is x509.Version.v1
    except _MALFORMED_EXTENSIONS:
        return False
    return bc.ca


def _can_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except _MALFORMED_EXTENSIONS:
        return False
    return ku.key_cert_sign


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Fails closed: a name that cannot be read, or a parent key or signature algorithm
    cryptography does not know (UnsupportedAlgorithm), is no signature."""
    try:
        if child.issuer != parent.subject:
            return False
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


#: Signature checks of one CA certificate by another (an intermediate by its issuer), by
#: the two certificates (equal exactly when their DER is): every path through an
#: intermediate repeats them, for every device. A leaf's own signature is always checked.
_CA_LINKS: dict[tuple[x509.Certificate, x509.Certificate], bool] = {}
_CA_LINKS_MAX = 512


def _ca_signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """:func:`_signed_by` for a *child* that is itself a CA, remembered."""
    key = (child, parent)
    known = _CA_LINKS.get(key)
    if known is None:
        known = _signed_by(child, parent)
        if len(_CA_LINKS) >= _CA_LINKS_MAX:
            _CA_LINKS.clear()
        _CA_LINKS[key] = known
    return known


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    what: str = "certificate",
) -> list[x509.Certificate]:
    """Return a path [leaf, ..., root] to one of *roots*, or raise ChainError.

    Every certificate on the path must be valid at *now*; every issuer must be
    a CA allowed to sign certificates, within its path length constraint.
    """
    if not roots:
        raise ChainError(f"no trusted roots are configured for the {what}")
    if not _valid_at(leaf, now):
        raise ChainError(f"the {what} is expired or not yet valid")
    # Certificates compare (and hash) as their DER encodings do, without re-encoding
    # them: public_bytes costs more than a signature check.
    pool = [c for c in intermediates if c != leaf]
    trusted = set(roots)
    path = [leaf]
    current = leaf
    for _ in range(MAX_DEPTH):
        signed_by = _signed_by if current is leaf else _ca_signed_by
        for root in roots:
            if signed_by(current, root):
                if not _valid_at(root, now):
                    raise ChainError(f"the root of the {what} is expired or not yet valid")
                _check_path_lengths([*path[1:], root])
                return [*path, root]
        if current in trusted:
            return path
        parent = next(
            (c for c in pool if signed_by(current, c) and _is_ca(c) and _can_sign_certificates(c)),
            None,
        )
        if parent is None:
            raise ChainError(f"the {what} does not chain to a trusted root")
        if not _valid_at(parent, now):
            raise ChainError(f"an intermediate of the {what} is expired or not yet valid")
        pool.remove(parent)
        path.append(parent)
        current = parent
    raise ChainError(f"the {what}'s chain is longer than {MAX_DEPTH}")


def _check_path_lengths(issuers: list[x509.Certificate]) -> None:
    """issuers[0] signed the leaf; each may have at most path_length CAs below it."""
    for index, issuer in enumerate(issuers):
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, *_MALFORMED_EXTENSIONS):
            continue
        below = index  # intermediate CAs between this issuer and the leaf
        if bc.path_length is not None and below > bc.path_length:
            raise ChainError("a CA's path length constraint is exceeded")
