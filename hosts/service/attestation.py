"""The Attestation CA: its policy from ``[attestation]`` in devid.toml, and the two steps
of credential activation (TPM 2.0 MakeCredential / ActivateCredential)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from engine.attestation import (
    AttestationPolicy,
    AttestationSession,
    AttestRequest,
    Challenge,
    EKCertificatePolicy,
    ak_certificate_template,
    answer_challenge,
    begin_attestation,
    session_id_for_secret,
)
from engine.errors import ConfigurationError, Forbidden, ProtocolError
from engine.extensions import ProvisionerRef
from engine.pipeline import IssuedCertificate, issue_own_certificate
from engine.tpm import TPMAlg, TPMTPublic, public_key_from_tpmt
from engine.tpm.hashing import hash_algorithm
from plugins.options import Options

from .audit import device_actor
from .ca import CA

log = logging.getLogger("devid.ca")

ATTESTATION_PROVISIONER = ProvisionerRef(type="attestation", name="tpm")
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


class OpenSSLRandomness:
    """MakeCredential's OAEP seed and ephemeral ECC key drawn by OpenSSL, which then does
    the public-key operation natively (``engine.tpm.credential.NativeRandomness``)."""

    def oaep_encrypt(
        self, key: rsa.RSAPublicKey, message: bytes, hash_alg: TPMAlg, label: bytes
    ) -> bytes:
        algorithm = hash_algorithm(hash_alg)
        return key.encrypt(message, padding.OAEP(padding.MGF1(algorithm), algorithm, label))

    def ephemeral_key(self, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(curve)


class AttestationService:
    """The Attestation CA: a device proves its EK and AK (``POST /attest``), answers the
    credential challenge its TPM alone can decrypt (``POST /secret``), and earns an AK
    certificate."""

    def __init__(self, ca: CA, policy: AttestationPolicy) -> None:
        self.ca = ca
        self.policy = policy
        self.native = OpenSSLRandomness()

    def attest(self, request: AttestRequest) -> Challenge:
        """Check device, EK and AK; keep the session; return the credential challenge."""
        ca = self.ca
        ek = request.ek_urn
        device = ca.stores.devices.get_device(ek)
        now = ca.clock.now()
        try:
            session, challenge = begin_attestation(
                request, device, self.policy, now, ca.random, native=self.native
            )
        except ProtocolError as exc:
            log.info("attestation refused", extra={"ek": ek, "reason": exc.detail})
            if device is not None:  # an unregistered EK is only logged: anyone can send one
                ca.auditor.record(
                    device_actor(ek), "attestation.refused", ek, "refused", error=exc.detail
                )
            raise
        ca.stores.sessions.put_session(
            session.id, session.ek_urn, session.to_json(), session.expires_at, now
        )
        log.info(
            "attestation challenged",
            extra={
                "ek": session.ek_urn,
                "ek_certificate_verified": session.ek_certificate_verified,
            },
        )
        return challenge

    def activate(self, secret: bytes) -> IssuedCertificate:
        """The TPM's answer (the decrypted secret); a correct one earns the AK certificate."""
        ca = self.ca
        stored = ca.stores.sessions.take_session(session_id_for_secret(secret))
        session = answer_challenge(
            AttestationSession.from_json(stored) if stored is not None else None,
            secret,
            ca.clock.now(),
        )
        device = ca.stores.devices.get_device(session.ek_urn)
        if device is None or not device.active:
            refused = Forbidden(f"the device {session.ek_urn} was disabled or removed meanwhile")
            ca.auditor.record(
                device_actor(session.ek_urn),
                "attestation.refused",
                session.ek_urn,
                "refused",
                error=refused.detail,
            )
            raise refused
        return self.issue_ak_certificate(session)

    def issue_ak_certificate(self, session: AttestationSession) -> IssuedCertificate:
        ca = self.ca
        issued = issue_own_certificate(
            ak_certificate_template(session.tpm, session.ek_digest),
            public_key_from_tpmt(TPMTPublic.from_bytes(session.ak_public)),
            ca.issuers["attestation"],
            ATTESTATION_PROVISIONER,
            now=ca.clock.now(),
            lifetime=self.policy.ak_certificate_lifetime,
            random=ca.random,
            evidence=session.evidence(),
        )
        ca.record_issued(issued, actor=device_actor(session.ek_urn))
        return issued
