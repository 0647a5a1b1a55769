"""Loading the Attestation CA's policy from ``[attestation]`` in devid.toml."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from engine.attestation import AttestationPolicy, EKCertificatePolicy
from engine.errors import ConfigurationError
from plugins.options import Options

BUNDLED_EK_ROOTS = Path(__file__).with_name("ek_roots")
DEFAULT_EK_ROOTS_DIR = "ek-roots"


def _load_pems(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"EK root file {path} is missing") from None
    except ValueError as exc:
        raise ConfigurationError(f"EK root file {path} cannot be parsed: {exc}") from None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:
        return False
    return True


def bundled_ek_certificates() -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    roots: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    for path in sorted(BUNDLED_EK_ROOTS.glob("*.pem")):
        for cert in _load_pems(path):
            (roots if _self_signed(cert) else intermediates).append(cert)
    return roots, intermediates


def load_attestation_policy(table: Mapping[str, Any], data_dir: Path) -> AttestationPolicy:
    opts = Options("[attestation]", table)
    roots: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    if opts.boolean("bundled_ek_roots", True):
        roots, intermediates = bundled_ek_certificates()
    extra = opts.get("ek_roots", [])
    if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
        raise ConfigurationError("[attestation] ek_roots must be a list of file paths")
    for name in extra:
        path = Path(name)
        roots.extend(_load_pems(path if path.is_absolute() else data_dir / path))
    # Every PEM file dropped into this directory is trusted as well (operators add
    # their fleet's EK CAs without editing devid.toml).
    roots_dir = Path(opts.string("ek_roots_dir", DEFAULT_EK_ROOTS_DIR))
    roots_dir = roots_dir if roots_dir.is_absolute() else data_dir / roots_dir
    if roots_dir.is_dir():
        for path in sorted(roots_dir.glob("*.pem")):
            roots.extend(_load_pems(path))
    try:
        unverifiable = EKCertificatePolicy(opts.string("unverifiable_ek_certificate", "refuse"))
    except ValueError:
        raise ConfigurationError(
            "[attestation] unverifiable_ek_certificate must be 'refuse' or 'record'"
        ) from None
    policy = AttestationPolicy(
        ek_roots=tuple(roots),
        ek_intermediates=tuple(intermediates),
        unverifiable_ek_certificate=unverifiable,
        require_ek_certificate=opts.boolean("require_ek_certificate", False),
        challenge_lifetime=opts.duration("challenge_lifetime", "60s"),
        ak_certificate_lifetime=opts.duration("ak_certificate_lifetime", "30d"),
    )
    opts.finish()
    return policy
