"""The SCEP provisioner: enrolment of MDM-managed devices and network gear (RFC 8894).

A SCEP client proves nothing about its hardware; it knows a challenge password. So
the certificates this provisioner authorizes come from a CA that vouches for no
device (``issuer = "tls"`` by default; never the Agent, Attestation or Account CA,
which ``devid.toml`` refuses when it is loaded), carry the ``mdm-challenge``
assurance marker (docs/ca.md), and name only what the policy allows:

- the subject's common name must match ``allowed_subjects`` (default: any), and
  every SAN ``allowed_sans`` (default: none at all; list patterns to allow some);
- the key is one of ``key_types``; the EKUs are the template's (default clientAuth),
  the key usage digitalSignature and keyEncipherment (what EAP-TLS and IKE clients ask);
- the validity is within ``durations`` (default 90 days, at most a year);
- a renewal (RenewalReq/UpdateReq signed by a certificate this provisioner issued,
  still active: the host checks that) keeps the subject of the certificate it renews
  and ends no later than ``durations.max`` from now.

Challenges: a static password (``challenge_file``, or ``challenge_env`` naming an
environment variable; at least 16 characters, compared in constant time), one-time
challenges (``one_time_challenges = true``: ``devid scep challenge``), the
``devid_scep_challenge`` hooks (``challenge_hook = true``) and an HTTP webhook
(``[provisioners.webhook]``). At least one must be enabled; an empty challenge is never
accepted.

Content encryption: AES-128 and AES-256 always; 3DES with ``allow_des3 = true``; single
DES only with ``allow_des = true``, for clients that know nothing else (Debian's Go
scepclient 2.1), and over HTTPS only (the host refuses it on the plain-HTTP SCEP
listener), so TLS protects the challenge in transit; a provisioner that allows DES should
still use one-time challenges. ``approval = "manual"`` makes every new enrolment wait
for an operator (``devid scep approve``) after its challenge passed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from plugins.api import (
    Assurance,
    Authorization,
    AuthorizeContext,
    CommonNameIs,
    ConfigurationError,
    ContentEncryption,
    DurationLimits,
    Forbidden,
    KeyType,
    KeyTypeIn,
    NamePatterns,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    SANsAre,
    SCEPEnrolling,
    SCEPIdentity,
    SCEPRequest,
    SetAssurance,
    SetExtendedKeyUsage,
    SetKeyUsage,
    SetSubjectAndSANs,
    SignPolicy,
    Validator,
    Webhook,
    describe_ekus,
    durations_view,
    fingerprint,
    parse_ekus,
)

log = logging.getLogger("devid.scep")

DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(hours=1), maximum=timedelta(days=365), default=timedelta(days=90)
)
MIN_STATIC_CHALLENGE = 16
MAX_WEBHOOK_TIMEOUT = timedelta(seconds=30)

#: Every capability GetCACaps may announce, in the order it lists them.
ALL_CAPABILITIES = (
    "POSTPKIOperation",
    "SCEPStandard",
    "Renewal",
    "AES",
    "DES3",
    "SHA-1",
    "SHA-256",
    "SHA-512",
    "GetNextCACert",
)
_ENCRYPTIONS = {e.value: e for e in ContentEncryption}
_ANY_NAME = NamePatterns()


class SCEPProvisioner(Provisioner):
    type_name: ClassVar[str] = "SCEP"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        static_challenge: str | None = None,
        one_time_challenges: bool = False,
        challenge_hook: bool = False,
        webhook: Webhook | None = None,
        manual_approval: bool = False,
        allow_renewal: bool = True,
        allow_des3: bool = False,
        allow_des: bool = False,
        reply_encryption: ContentEncryption = ContentEncryption.AES256_CBC,
        capabilities: tuple[str, ...] | None = None,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        allowed_subjects: NamePatterns = _ANY_NAME,
        allowed_sans: NamePatterns | None = None,
        ekus: tuple[x509.ObjectIdentifier, ...] = (),
        durations: DurationLimits = DEFAULT_DURATIONS,
        backdate: timedelta = timedelta(minutes=1),
        next_ca_certificate: x509.Certificate | None = None,
        ra: SCEPIdentity | None = None,
    ) -> None:
        where = f"provisioner {name!r} (SCEP)"
        if static_challenge is not None and len(static_challenge) < MIN_STATIC_CHALLENGE:
            raise ConfigurationError(
                f"{where}: the static challenge must be at least {MIN_STATIC_CHALLENGE}"
                " characters (an empty or short one is guessable)"
            )
        if not (static_challenge or one_time_challenges or challenge_hook or webhook):
            raise ConfigurationError(
                f"{where}: no challenge is enabled, so no client could ever enrol: set"
                " challenge_file (or challenge_env), one_time_challenges = true,"
                " challenge_hook = true or a [provisioners.webhook] table"
            )
        if reply_encryption is ContentEncryption.DES3_CBC and not allow_des3:
            raise ConfigurationError(f'{where}: encryption = "des3" needs allow_des3 = true')
        if reply_encryption is ContentEncryption.DES_CBC and not allow_des:
            raise ConfigurationError(f'{where}: encryption = "des" needs allow_des = true')
        if allow_des:
            log.warning(
                "%s accepts single-DES requests (allow_des = true): only for clients that"
                " know nothing else; prefer one-time challenges with it",
                where,
            )
        if not key_types:
            raise ConfigurationError(f"{where}: key_types must not be empty")
        self.name = name
        self.issuer = issuer
        self.ref = ProvisionerRef(type=self.type_name, name=name)
        self._static_digest = None if static_challenge is None else _digest(static_challenge)
        self.one_time_challenges = one_time_challenges
        self.challenge_hook = challenge_hook
        self.webhook = webhook
        self.manual_approval = manual_approval
        self.allow_renewal = allow_renewal
        self.encryptions = frozenset(
            {ContentEncryption.AES128_CBC, ContentEncryption.AES256_CBC}
            | ({ContentEncryption.DES3_CBC} if allow_des3 else set())
            | ({ContentEncryption.DES_CBC} if allow_des else set())
        )
        self.reply_encryption = reply_encryption
        self.key_types = key_types
        self.allowed_subjects = allowed_subjects
        # None: no SANs at all (an empty NamePatterns would allow every name).
        self.allowed_sans = allowed_sans
        self.ekus = ekus or parse_ekus(["clientAuth"], where)
        self.durations = durations
        self.backdate = backdate
        self.next_ca_certificate = next_ca_certificate
        self.ra = ra
        self.capabilities = self._capabilities(capabilities, allow_des3, where)

    def _capabilities(
        self, wanted: tuple[str, ...] | None, allow_des3: bool, where: str
    ) -> tuple[str, ...]:
        possible = [
            c
            for c in ALL_CAPABILITIES
            if (c != "DES3" or allow_des3)
            and (c != "Renewal" or self.allow_renewal)
            and (c != "GetNextCACert" or self.next_ca_certificate is not None)
        ]
        if wanted is None:
            return tuple(possible)
        unknown = [c for c in wanted if c not in ALL_CAPABILITIES]
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown capabilit{'y' if len(unknown) == 1 else 'ies'}"
                f" {', '.join(unknown)} (known: {', '.join(ALL_CAPABILITIES)})"
            )
        impossible = [c for c in wanted if c not in possible]
        if impossible:
            raise ConfigurationError(
                f"{where}: capabilities {', '.join(impossible)} need their settings"
                " (DES3: allow_des3 = true; Renewal: allow_renewal = true;"
                " GetNextCACert: next_ca_certificate)"
            )
        return tuple(c for c in ALL_CAPABILITIES if c in wanted)

    # --- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> SCEPProvisioner:
        where = f"provisioner {name!r} (SCEP)"
        opts = Options(where, options)
        issuer = opts.issuer(env.issuers)
        ekus = opts.template_ekus()
        encryption = opts.string("encryption", "aes256")
        if encryption not in _ENCRYPTIONS:
            raise ConfigurationError(
                f"{where}: encryption must be one of {', '.join(_ENCRYPTIONS)}"
            )
        approval = opts.string("approval", "auto")
        if approval not in ("auto", "manual"):
            raise ConfigurationError(f'{where}: approval must be "auto" or "manual"')
        capabilities = opts.get("capabilities")
        if capabilities is not None and (
            not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities)
        ):
            raise ConfigurationError(f"{where}: 'capabilities' must be a list of strings")
        sans = opts.get("allowed_sans")
        provisioner = cls(
            name=name,
            issuer=issuer,
            static_challenge=_static_challenge(opts, env.data_dir),
            one_time_challenges=opts.boolean("one_time_challenges", False),
            challenge_hook=opts.boolean("challenge_hook", False),
            webhook=_webhook(opts, env.data_dir),
            manual_approval=approval == "manual",
            allow_renewal=opts.boolean("allow_renewal", True),
            allow_des3=opts.boolean("allow_des3", False),
            allow_des=opts.boolean("allow_des", False),
            reply_encryption=_ENCRYPTIONS[encryption],
            capabilities=None if capabilities is None else tuple(capabilities),
            key_types=opts.key_types(),
            allowed_subjects=NamePatterns.parse(
                opts.get("allowed_subjects", []), f"{where}: allowed_subjects"
            ),
            allowed_sans=None
            if sans is None or sans == []
            else NamePatterns.parse(sans, f"{where}: allowed_sans"),
            ekus=parse_ekus(ekus, f"{where}.template"),
            durations=opts.durations(DEFAULT_DURATIONS),
            backdate=opts.duration("backdate", "1m"),
            next_ca_certificate=_next_ca_certificate(opts, env.data_dir),
            ra=_ra_identity(opts, env),
        )
        opts.finish()
        return provisioner

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """One-time challenges only (``devid scep challenge``), certificates from the TLS
        CA: no shared secret to leak before the operator chooses one."""
        return {
            "type": cls.type_name,
            "name": name,
            "issuer": "tls",
            "one_time_challenges": True,
            "durations": durations_view(DEFAULT_DURATIONS),
            "template": {"ekus": ["clientAuth"]},
        }

    def public_view(self) -> dict[str, Any]:
        challenges = [
            method
            for method, on in (
                ("static", self._static_digest is not None),
                ("one-time", self.one_time_challenges),
                ("hook", self.challenge_hook),
                ("webhook", self.webhook is not None),
            )
            if on
        ]
        view: dict[str, Any] = {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "capabilities": list(self.capabilities),
            "challenges": challenges,
            "approval": "manual" if self.manual_approval else "auto",
            "allowRenewal": self.allow_renewal,
            "encryption": self.reply_encryption.value,
            "acceptedEncryptions": sorted(e.value for e in self.encryptions),
            "keyTypes": sorted(k.value for k in self.key_types),
            "allowedSubjects": self.allowed_subjects.texts(),
            "allowedSANs": [] if self.allowed_sans is None else self.allowed_sans.texts(),
            "ekus": describe_ekus(self.ekus),
            "durations": durations_view(self.durations),
            "assurance": Assurance.MDM_CHALLENGE.label,
        }
        if self.next_ca_certificate is not None:
            view["nextCACertificate"] = fingerprint(self.next_ca_certificate)
        if self.ra is not None:
            view["raCertificate"] = fingerprint(self.ra.certificate)
        return view

    # --- the capability ----------------------------------------------------------------

    def scep(self) -> SCEPEnrolling:
        return self

    def check_static_challenge(self, challenge: str) -> bool | None:
        if self._static_digest is None:
            return None
        return hmac.compare_digest(_digest(challenge), self._static_digest)

    def authorize_enrolment(self, request: SCEPRequest, ctx: AuthorizeContext) -> Authorization:
        csr = request.csr
        subject = csr.common_name
        if not subject:
            raise Forbidden("the request has no subject common name")
        renewed = request.renewed_certificate
        if renewed is not None:
            old = renewed.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            if not old or old[0].value != subject:
                raise Forbidden(
                    "a renewal keeps the subject of the certificate it renews"
                    f" ({renewed.subject.rfc4514_string()})"
                )
        if not self.allowed_subjects.allows_subject(subject):
            raise Forbidden(f"subject {subject!r} is not allowed by provisioner {self.name!r}")
        sans = csr.sans
        if sans and self.allowed_sans is None:
            raise Forbidden(
                f"provisioner {self.name!r} certifies no subject alternative names"
                f" (asked for {', '.join(str(s) for s in sans)})"
            )
        outside = [
            str(s) for s in sans if self.allowed_sans and not self.allowed_sans.allows_san(s)
        ]
        if outside:
            raise Forbidden(
                f"provisioner {self.name!r} does not allow the name(s) {', '.join(outside)}"
            )
        if csr.other_names:
            raise Forbidden("otherName SANs are not certified through SCEP")
        validators: tuple[Validator, ...] = (
            KeyTypeIn(self.key_types),
            CommonNameIs(subject),
            SANsAre(frozenset(sans)),
        )
        evidence: dict[str, Any] = {
            "method": "scep",
            "scep_message_type": request.message_type,
            "transaction_id": request.transaction_id,
            "challenge": request.method,
            "assurance": Assurance.MDM_CHALLENGE.label,
        }
        if request.renewed is not None:
            evidence["renewed_serial"] = request.renewed.serial
        policy = SignPolicy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            backdate=self.backdate,
            validators=validators,
            modifiers=(
                SetSubjectAndSANs(subject, tuple(sans)),
                SetExtendedKeyUsage(self.ekus),
                _KEY_USAGE,
                SetAssurance(Assurance.MDM_CHALLENGE),
            ),
            evidence=evidence,
        )
        return Authorization(policy=policy)


# Key usage digitalSignature and keyEncipherment: what EAP-TLS and IKEv2 clients with
# RSA keys expect of a client certificate.
_KEY_USAGE = SetKeyUsage(frozenset({"digital_signature", "key_encipherment"}))


def _digest(challenge: str) -> bytes:
    return hashlib.sha256(challenge.encode("utf-8")).digest()


def _resolve(data_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else data_dir / path


def _static_challenge(opts: Options, data_dir: Path) -> str | None:
    if opts.get("challenge") is not None:
        raise ConfigurationError(
            f"{opts.where}: a challenge is a secret and devid.toml is not: put it in a file"
            " (challenge_file) or an environment variable (challenge_env)"
        )
    file_name = opts.get("challenge_file")
    env_name = opts.get("challenge_env")
    if file_name is not None and env_name is not None:
        raise ConfigurationError(f"{opts.where}: set challenge_file or challenge_env, not both")
    if file_name is not None:
        if not isinstance(file_name, str) or not file_name:
            raise ConfigurationError(f"{opts.where}: challenge_file must be a file name")
        path = _resolve(data_dir, file_name)
        try:
            value = path.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{opts.where}: cannot read {path}: {exc}") from None
        if not value:
            raise ConfigurationError(f"{opts.where}: {path} is empty")
        return value
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise ConfigurationError(f"{opts.where}: challenge_env must name a variable")
        value = os.environ.get(env_name, "")
        if not value:
            raise ConfigurationError(
                f"{opts.where}: the environment variable {env_name} is not set or empty"
            )
        return value
    return None


def _webhook(opts: Options, data_dir: Path) -> Webhook | None:
    table = opts.get("webhook")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{opts.where}: 'webhook' must be a table")
    sub = Options(f"{opts.where}.webhook", table)
    url = sub.string("url")
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"{sub.where}: url must be an http:// or https:// URL")
    secret_name = sub.string("secret_file")
    path = _resolve(data_dir, secret_name)
    try:
        secret = path.read_bytes().strip(b"\r\n")
    except OSError as exc:
        raise ConfigurationError(f"{sub.where}: cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_STATIC_CHALLENGE:
        raise ConfigurationError(
            f"{sub.where}: the webhook secret in {path} must be at least"
            f" {MIN_STATIC_CHALLENGE} bytes"
        )
    timeout = sub.duration("timeout", "5s")
    if not timedelta(0) < timeout <= MAX_WEBHOOK_TIMEOUT:
        raise ConfigurationError(f"{sub.where}: timeout must be between 1s and 30s")
    sub.finish()
    return Webhook(url=url, secret=secret, timeout=timeout)


def _next_ca_certificate(opts: Options, data_dir: Path) -> x509.Certificate | None:
    name = opts.get("next_ca_certificate")
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{opts.where}: next_ca_certificate must be a PEM file")
    path = _resolve(data_dir, name)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{opts.where}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"{opts.where}: {path} is not a PEM certificate: {exc}") from None


def _ra_identity(opts: Options, env: ProvisionerEnvironment) -> SCEPIdentity | None:
    """``ra_certificate`` and ``ra_key``: an RA the operator provides (both or neither).

    The key is PEM, encrypted with the CA password (or not encrypted, in a file only its
    owner reads); RSA of 2048 bits or more, since SCEP clients encrypt to it; the
    certificate is not a CA and, if it has a key usage, allows keyEncipherment. Without
    the CA password (``devid config``) only the certificate is checked."""
    cert_name = opts.get("ra_certificate")
    key_name = opts.get("ra_key")
    if cert_name is None and key_name is None:
        return None
    if not isinstance(cert_name, str) or not isinstance(key_name, str):
        raise ConfigurationError(f"{opts.where}: set both ra_certificate and ra_key (PEM files)")
    cert_path = _resolve(env.data_dir, cert_name)
    key_path = _resolve(env.data_dir, key_name)
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{opts.where}: cannot read {cert_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(
            f"{opts.where}: {cert_path} is not a PEM certificate: {exc}"
        ) from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise ConfigurationError(f"{opts.where}: the RA certificate must not be a CA")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_encipherment:
            raise ConfigurationError(
                f"{opts.where}: the RA certificate's key usage must allow keyEncipherment"
                " (clients encrypt their requests to it)"
            )
    except x509.ExtensionNotFound:
        pass
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise ConfigurationError(f"{opts.where}: the RA key must be RSA of 2048 bits or more")
    try:
        data = key_path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{opts.where}: cannot read {key_path}: {exc.strerror}") from None
    if env.password is None:
        return None  # checked as far as possible without the password
    key = None
    for password in (env.password, None):
        try:
            key = serialization.load_pem_private_key(data, password=password)
            break
        except (TypeError, ValueError):
            continue
    if key is None:
        raise ConfigurationError(
            f"{opts.where}: cannot read the RA key {key_path}: not PEM, or not encrypted with"
            " the CA password"
        )
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != public:
        raise ConfigurationError(f"{opts.where}: {key_path} is not the RA certificate's key")
    return SCEPIdentity(certificate=certificate, key=key)
