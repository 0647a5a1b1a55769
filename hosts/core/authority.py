"""The CA at run time: engine + plugins + store, as operations hosts call.

Each public operation is synchronous and is meant to run in a worker thread
(signing and SQLite commits block). Errors are ``ProtocolError``s that the
host turns into responses in one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.attestation import (
    AttestationSession,
    AttestRequest,
    ak_certificate_template,
    answer_challenge,
    begin_attestation,
    session_id_for_secret,
)
from engine.attestation.session import parse_answer
from engine.crl import build_crl
from engine.csr import parse_csr
from engine.durations import parse_time_or_duration
from engine.errors import (
    BadRequest,
    ConfigurationError,
    Conflict,
    Forbidden,
    NotFound,
    ProtocolError,
    Unauthorized,
)
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn
from engine.pipeline import (
    IssuedCertificate,
    Issuer,
    SignRequest,
    issue_own_certificate,
    prepare_certificate,
)
from engine.policy import SignPolicy
from engine.ports import Clock, Random
from engine.tpm import TPMTPublic, public_key_from_tpmt
from hosts.store import CertificateRecord, Stores, UsedToken, open_sqlite
from plugins.base import Credential, Provisioner
from plugins.manager import PluginManager
from plugins.provisioner import (
    AuthorizeContext,
    Lookup,
    ProvisionerEnvironment,
    TokenUse,
)

from .accounts import AccountProvisionerSync, Accounts, device_accounts
from .acme_service import ACMEService
from .admin_certs import is_admin_record
from .attestation import load_attestation_policy
from .config import Config, load_config
from .inventory import ImportReport, Inventory
from .issuer_scope import check_provisioner_issuer
from .lookup import StoreLookup
from .pki import fingerprint, load_issuers
from .ports import SystemClock, SystemRandom
from .renewal import renew
from .revocation import CertificateRevoker, parse_reason
from .upgrade import upgrade_data_dir

log = logging.getLogger("devid.ca")

ATTESTATION_PROVISIONER = ProvisionerRef(type="attestation", name="tpm")

MAX_REASON_LENGTH = 512


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def _string_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def parse_serial(value: Any) -> int:
    """A serial as clients send it: decimal (step's form) or 0x-prefixed hex."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise BadRequest("field 'serial' must be a decimal string")
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        raise BadRequest(f"serial {value!r} is not a number") from None
    if number <= 0:
        raise BadRequest("serial must be positive")
    return number


def _load_peer(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise Unauthorized("the TLS client certificate cannot be parsed") from None


def load_provisioners(
    config: Config, plugins: PluginManager, password: bytes | None, lookup: Lookup | None = None
) -> dict[str, Provisioner]:
    env = ProvisionerEnvironment(
        data_dir=config.data_dir,
        issuers=frozenset(config.issuers),
        password=password,
        lookup=lookup,
    )
    found: dict[str, Provisioner] = {}
    for table in config.provisioners:
        name = table.get("name")
        type_name = table.get("type")
        if not isinstance(name, str) or not name or not isinstance(type_name, str):
            raise ConfigurationError("every [[provisioners]] table needs a string name and type")
        if name in found:
            raise ConfigurationError(f"two provisioners are named {name!r}")
        cls = plugins.provisioner_type(type_name)
        if not cls.configurable:
            raise ConfigurationError(
                f"provisioner {name!r}: type {cls.type_name!r} is made by devid itself and"
                " cannot be configured in devid.toml"
            )
        found[name] = cls.from_config(name, table, env)
        check_provisioner_issuer(found[name])
    return found


class Authority:
    """A loaded CA: issuers, provisioners, store and the operations on them."""

    def __init__(
        self,
        *,
        config: Config,
        root: x509.Certificate,
        issuers: dict[str, Issuer],
        provisioners: dict[str, Provisioner],
        plugins: PluginManager,
        stores: Stores,
        clock: Clock,
        random: Random,
    ) -> None:
        self.config = config
        self.root = root
        self.root_pem = pem(root)
        self.root_fingerprint = fingerprint(root)
        self.issuers = issuers
        self.provisioners = provisioners
        self.plugins = plugins
        self.stores = stores
        self.clock = clock
        self.random = random
        # What provisioners read the CA's records through, and what the host builds the
        # account provisioners with.
        self.lookup = StoreLookup(stores)
        self.provisioner_env = ProvisionerEnvironment(
            data_dir=config.data_dir,
            issuers=frozenset(config.issuers),
            lookup=self.lookup,
        )
        self.base_urls: tuple[str, ...] = ()
        self._audiences: dict[str, frozenset[str]] = {}
        # The provisioner types asked to read each credential (/1.0/sign, token revocation).
        self.credential_types = tuple(plugins.provisioner_types().values())
        self.inventory = Inventory(stores, clock, audit=plugins.audit)
        self.attestation_policy = load_attestation_policy(config.attestation, config.data_dir)
        self.acme = ACMEService(self)
        self.account_sync = AccountProvisionerSync(self)
        self.accounts = Accounts(
            stores, clock, random, on_change=self.sync_account_provisioners, audit=plugins.audit
        )
        self.revoker = CertificateRevoker(stores, clock, plugins.audit)
        self.sync_account_provisioners()

    @classmethod
    def load(
        cls,
        data_dir: Path,
        password: bytes,
        *,
        plugins: PluginManager | None = None,
        clock: Clock | None = None,
        random: Random | None = None,
        stores: Stores | None = None,
    ) -> Authority:
        # A data directory made by an older devid gets what this version needs first
        # (the TLS CA); under a lock, so concurrent processes do it once.
        upgrade_data_dir(data_dir, password)
        config = load_config(data_dir)
        if config.admin.client_subjects:
            log.warning(
                "[admin] client_subjects in %s grants nothing any more (anyone can get a"
                " certificate with a given subject, e.g. over ACME http-01): issue each admin"
                " a certificate with `devid admin certificate NAME OUT.crt OUT.key`, then"
                " remove client_subjects",
                data_dir / "devid.toml",
            )
        plugins = plugins or PluginManager(disabled=config.plugins_disabled)
        root, issuers = load_issuers(config, password)
        stores = stores or open_sqlite(config.store.path, synchronous=config.store.synchronous)
        provisioners = load_provisioners(config, plugins, password, StoreLookup(stores))
        return cls(
            config=config,
            root=root,
            issuers=issuers,
            provisioners=provisioners,
            plugins=plugins,
            stores=stores,
            clock=clock or SystemClock(),
            random=random or SystemRandom(),
        )

    def close(self) -> None:
        self.stores.close()

    # --- accounts ------------------------------------------------------------

    def sync_account_provisioners(self) -> None:
        """Rebuild the X5C provisioner of every account (``account:NAME``) from the store."""
        self.account_sync.sync()

    def device_accounts(
        self, peer_der: bytes | None, base_url: str = "", bearer: str | None = None
    ) -> dict[str, Any]:
        """``GET /api/v1/device/accounts``: a device's accounts, proven by mTLS with its
        certificate or by an x5c token its key signed."""
        return device_accounts(self, peer_der, base_url, bearer)

    # --- endpoint identity -------------------------------------------------

    def set_base_urls(self, urls: list[str]) -> None:
        """The URLs clients reach this CA by; token audiences are built from them."""
        self.base_urls = tuple(u.rstrip("/") for u in urls)
        self._audiences = {}

    def audiences(self, path: str) -> frozenset[str]:
        found = self._audiences.get(path)
        if found is None:
            found = frozenset(f"{base}{path}" for base in self.base_urls)
            if len(self._audiences) < 64:  # paths are the host's own few routes
                self._audiences[path] = found
        return found

    def context(self, path: str) -> AuthorizeContext:
        return AuthorizeContext(now=self.clock.now(), audiences=self.audiences(path))

    # --- read-only views -----------------------------------------------------

    def provisioners_view(self) -> list[dict[str, Any]]:
        return [p.public_view() for p in self.provisioners.values()]

    def chain_pem(self, issued: IssuedCertificate) -> dict[str, Any]:
        leaf = issued.pem
        issuer_chain = issued.issuer.chain_pem
        return {"crt": leaf, "ca": issuer_chain[0], "certChain": [leaf, *issuer_chain]}

    # --- operations ------------------------------------------------------------

    def _use_token(self, token: TokenUse | None) -> None:
        if token is None:
            return
        if not self.stores.tokens.use_token(
            token.provisioner, token.token_id, token.expires_at, self.clock.now()
        ):
            raise Unauthorized("token has already been used")

    def record_issued(self, issued: IssuedCertificate, token: TokenUse | None = None) -> None:
        """Store *issued* (and mark *token* used in the same commit), then log and audit it.

        Raises Unauthorized, storing nothing, if *token* was used before.
        """
        now = self.clock.now()
        recorded = self.stores.certificates.record_certificate(
            self.certificate_record(issued),
            used_token=None
            if token is None
            else UsedToken(token.provisioner, token.token_id, token.expires_at, now),
        )
        if not recorded:
            raise Unauthorized("token has already been used")
        self.announce_issued(issued)

    def certificate_record(self, issued: IssuedCertificate) -> CertificateRecord:
        """What the store keeps about *issued* (ACME stores it with its order)."""
        return CertificateRecord(
            serial=issued.serial_hex,
            issuer=issued.issuer.name,
            subject=issued.subject_text,
            sans=issued.san_texts,
            provisioner_type=issued.provisioner.type,
            provisioner_name=issued.provisioner.name,
            not_before=issued.not_before,
            not_after=issued.not_after,
            der=issued.der,
            evidence=dict(issued.evidence),
            created_at=self.clock.now(),
        )

    def announce_issued(self, issued: IssuedCertificate) -> None:
        """Log and audit a certificate that was just stored."""
        fields = {
            "serial": issued.serial_hex,
            "subject": issued.subject_text,
            "sans": list(issued.san_texts),
            "provisioner": issued.provisioner.name,
            "issuer": issued.issuer.name,
            "not_after": issued.not_after.isoformat(),
        }
        log.info("certificate issued", extra=fields)
        self.plugins.audit("certificate.issued", fields)

    def provisioner_named(self, name: str) -> Provisioner | None:
        """A configured provisioner, or an account's (also one another process added)."""
        found = self.provisioners.get(name)
        return found if found is not None else self.account_sync.find(name)

    def route_credential(self, text: str) -> tuple[Provisioner, Credential]:
        """The provisioner a credential addresses, and the reading of it by that
        provisioner's type: every loaded type is asked to read it (nothing is verified
        yet), and it goes to the provisioner it names only if that one is of the type that
        read it. Refuses with the first reader's error when no type reads it."""
        errors: list[tuple[type[Provisioner], ProtocolError]] = []
        addressed: str | None = None
        for cls in self.credential_types:
            try:
                reading = cls.read_credential(text)
            except ProtocolError as exc:
                errors.append((cls, exc))
                continue
            if reading is None:
                continue
            addressed = addressed or reading.provisioner
            provisioner = self.provisioner_named(reading.provisioner)
            if provisioner is not None and isinstance(provisioner, cls):
                return provisioner, reading
        if addressed is not None:
            # Addressed to a provisioner whose own type refused to read it: say why.
            target = self.provisioner_named(addressed)
            for cls, refusal in errors:
                if target is not None and isinstance(target, cls):
                    raise refusal
            raise Unauthorized(
                f"token issuer {addressed!r} is not a provisioner that signs tokens here"
            )
        if errors:
            raise errors[0][1]
        raise Unauthorized("no provisioner here reads this kind of credential")

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /1.0/sign``: {csr, ott, notBefore?, notAfter?} -> {crt, ca, certChain}."""
        csr_text = _string_field(body, "csr")
        token = _string_field(body, "ott")
        assert csr_text is not None and token is not None
        now = self.clock.now()
        not_before = parse_time_or_duration(body.get("notBefore"), now)
        not_after = parse_time_or_duration(body.get("notAfter"), now)
        csr = parse_csr(csr_text)
        provisioner, credential = self.route_credential(token)
        authorization = provisioner.authorize_sign(credential, csr, self.context("/1.0/sign"))
        policy = authorization.policy
        if not isinstance(policy, SignPolicy):
            log.error("provisioner %s authorized a signing with no sign policy", provisioner.name)
            raise Forbidden(f"provisioner {provisioner.name!r} authorized no certificate")
        self._check_presented_certificate(policy)
        self.plugins.check_sign(provisioner, csr, policy)
        issuer = self.issuers.get(policy.issuer)
        if issuer is None:
            log.error("provisioner %s names unknown issuer %r", provisioner.name, policy.issuer)
            raise Forbidden(f"provisioner {provisioner.name!r} names an unknown issuer")
        prepared = prepare_certificate(
            SignRequest(csr=csr, not_before=not_before, not_after=not_after),
            policy,
            issuer,
            self.clock,
        )
        # The token is marked used in the same commit that stores the certificate, and
        # only a request that passed every check gets that far.
        issued = prepared.sign(self.random)
        self.record_issued(issued, authorization.token)
        return self.chain_pem(issued)

    def _check_presented_certificate(self, policy: SignPolicy) -> None:
        """A credential certificate this CA issued (an X5C leaf) must still be active here.

        Provisioners cannot read the store, so revocation of such a certificate is
        enforced once, for every provisioner, at this point.
        """
        serial = policy.evidence.get("leaf_serial")  # lowercase hex, as the store keys it
        if not isinstance(serial, str):
            return
        record = self.stores.certificates.get_certificate(serial.lower())
        if record is not None and record.status != "active":
            raise Unauthorized(f"the certificate that signed the token is {record.status}")

    def _known_certificate(self, cert: x509.Certificate) -> tuple[CertificateRecord, Issuer]:
        """A certificate we issued, still active and unexpired, verified against its issuer."""
        issuer = next(
            (i for i in self.issuers.values() if i.certificate.subject == cert.issuer), None
        )
        if issuer is None:
            raise Unauthorized("certificate was not issued by this CA")
        try:
            cert.verify_directly_issued_by(issuer.certificate)
        except Exception:
            raise Unauthorized("certificate signature does not verify") from None
        record = self.stores.certificates.get_certificate(serial_hex(cert.serial_number))
        if record is None:
            raise Unauthorized("certificate is unknown to this CA")
        if record.status != "active":
            raise Unauthorized(f"certificate is {record.status}")
        now = self.clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Unauthorized("certificate is not currently valid")
        return record, issuer

    def renew(self, peer_der: bytes | None) -> dict[str, Any]:
        """``POST /1.0/renew``: the client proves the current certificate over mTLS."""
        if peer_der is None:
            raise Unauthorized(
                "renewal needs the current certificate as the TLS client certificate"
            )
        cert = _load_peer(peer_der)
        record, issuer = self._known_certificate(cert)
        issued = renew(
            cert,
            record,
            issuer,
            find_provisioner=self.provisioner_named,
            stores=self.stores,
            clock=self.clock,
            random=self.random,
        )
        self.record_issued(issued)
        return self.chain_pem(issued)

    def _issued_record(self, serial: int) -> CertificateRecord:
        record = self.stores.certificates.get_certificate(serial_hex(serial))
        if record is None:
            raise NotFound(f"no certificate with serial {serial}")
        return record

    def _revoke(self, record: CertificateRecord, code: int, reason: str, by: str) -> None:
        if not self.revoker.revoke(record, code, reason, by):
            raise Conflict("certificate is already revoked")

    def revoke(
        self, body: Mapping[str, Any], peer_der: bytes | None, bearer: str | None = None
    ) -> dict[str, Any]:
        """``POST /1.0/revoke``: by the issuing provisioner's token, an admin credential
        (``Authorization: Bearer <admin token>``), or the certificate's own key."""
        serial = parse_serial(body.get("serial"))
        token = _string_field(body, "ott", required=False)
        reason_code, reason = parse_reason(body)
        record = self._issued_record(serial)
        if token is not None:
            provisioner = self.provisioners.get(record.provisioner_name)
            if provisioner is None:
                raise Unauthorized("the provisioner that issued this certificate no longer exists")
            credential = type(provisioner).read_credential(token)
            if credential is None:
                raise Unauthorized(
                    f"provisioner {provisioner.name!r} does not revoke with a credential"
                )
            authorization = provisioner.authorize_revoke(
                credential, serial, self.context("/1.0/revoke")
            )
            self._use_token(authorization.token)
            revoked_by = f"provisioner:{provisioner.name}"
        elif bearer:
            revoked_by = self.check_admin(bearer, None)
        elif peer_der is not None:
            cert = _load_peer(peer_der)
            if cert.serial_number != serial:
                raise Unauthorized("the TLS client certificate is not the one being revoked")
            self._known_certificate(cert)
            revoked_by = "certificate-key"
        else:
            raise Unauthorized(
                "revocation needs a token from the issuing provisioner, an admin credential"
                " or the certificate over mTLS"
            )
        self._revoke(record, reason_code, reason, revoked_by)
        return {"status": "ok"}

    def admin_revoke(self, serial_text: str, body: Mapping[str, Any], admin: str) -> dict[str, Any]:
        """``POST /api/v1/certificates/{serial}/revoke``: an operator (*admin*, as
        ``check_admin`` named them) revokes any certificate this CA issued."""
        serial = parse_serial(serial_text)
        reason_code, reason = parse_reason(body)
        record = self._issued_record(serial)
        self._revoke(record, reason_code, reason, admin)
        return {
            "status": "ok",
            "serial": str(serial),
            "issuer": record.issuer,
            "reasonCode": reason_code,
            "revokedBy": admin,
        }

    def crl(self, issuer_name: str = "agent") -> bytes:
        issuer = self.issuers.get(issuer_name)
        if issuer is None:
            raise NotFound(f"no issuer named {issuer_name!r}")
        now = self.clock.now()
        return build_crl(
            issuer,
            self.stores.certificates.revoked_entries(issuer_name, now),
            now=now,
            number=int(now.timestamp() * 1000),
            lifetime=timedelta(hours=24),
        )

    # --- Attestation CA ---------------------------------------------------------

    def attest(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /attest``: check device, EK and AK; answer with the credential challenge."""
        request = AttestRequest.parse(body)
        device = self.stores.devices.get_device(ek_urn(request.ek_public))
        now = self.clock.now()
        try:
            session, challenge = begin_attestation(
                request, device, self.attestation_policy, now, self.random
            )
        except ProtocolError as exc:
            log.info(
                "attestation refused",
                extra={"ek": ek_urn(request.ek_public), "reason": exc.detail},
            )
            raise
        self.stores.sessions.put_session(
            session.id, session.ek_urn, session.to_json(), session.expires_at, now
        )
        log.info(
            "attestation challenged",
            extra={
                "ek": session.ek_urn,
                "ek_certificate_verified": session.ek_certificate_verified,
            },
        )
        return challenge.to_json()

    def activate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /secret``: the TPM's answer; a correct one earns the AK certificate."""
        secret = parse_answer(body)
        stored = self.stores.sessions.take_session(session_id_for_secret(secret))
        session = answer_challenge(
            AttestationSession.from_json(stored) if stored is not None else None,
            secret,
            self.clock.now(),
        )
        device = self.stores.devices.get_device(session.ek_urn)
        if device is None or not device.active:
            raise Forbidden(f"the device {session.ek_urn} was disabled or removed meanwhile")
        issued = self.issue_ak_certificate(session)
        return {
            "chain": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in issued.chain]
        }

    def issue_ak_certificate(self, session: AttestationSession) -> IssuedCertificate:
        issued = issue_own_certificate(
            ak_certificate_template(session.tpm, session.ek_digest),
            public_key_from_tpmt(TPMTPublic.from_bytes(session.ak_public)),
            self.issuers["attestation"],
            ATTESTATION_PROVISIONER,
            now=self.clock.now(),
            lifetime=self.attestation_policy.ak_certificate_lifetime,
            random=self.random,
            evidence=session.evidence(),
        )
        self.record_issued(issued)
        return issued

    def sync_inventory(self) -> ImportReport:
        """Pull devices from inventory-source plugins into the inventory."""
        rows = self.plugins.inventory_devices(self.config.inventory)
        return self.inventory.upsert_many(rows)

    # --- admin ---------------------------------------------------------------

    def check_admin(self, bearer: str | None, peer_der: bytes | None) -> str:
        """Authenticate an admin API caller; returns who it is, or raises Unauthorized.

        A bearer token must hash to one of ``[admin] token_sha256``. A client certificate
        counts only if ``devid admin certificate`` issued it: verified against the TLS CA,
        recorded by the internal admin-client provisioner, the same bytes as the record,
        active and unexpired. Its subject counts for nothing (``client_subjects`` is
        ignored), so no certificate anyone else can obtain ever authenticates an admin.
        """
        admin = self.config.admin
        if bearer:
            digest = hashlib.sha256(bearer.encode()).hexdigest()
            if any(hmac.compare_digest(digest, known) for known in admin.token_sha256):
                return "admin-token"
            raise Unauthorized("the admin token is not valid")
        if peer_der is not None:
            cert = _load_peer(peer_der)
            record, _ = self._known_certificate(cert)
            subject = cert.subject.rfc4514_string()
            if not is_admin_record(record) or not hmac.compare_digest(
                record.der, cert.public_bytes(Encoding.DER)
            ):
                raise Unauthorized(
                    f"certificate {subject} is not an admin certificate (only certificates"
                    " from `devid admin certificate` open the admin API)"
                )
            return f"admin-certificate:{subject}"
        raise Unauthorized(
            "the admin API needs 'Authorization: Bearer <admin token>'"
            " or an admin client certificate (`devid admin certificate`)"
        )

    def root_by_fingerprint(self, sha256: str) -> str:
        if sha256.lower().replace(":", "") != self.root_fingerprint:
            raise NotFound("no root with that fingerprint")
        return self.root_pem
