"""A CA at run time, built from its data directory: the shared parts and every service.

This module only wires. :meth:`Authority.load` upgrades an older data directory,
reads devid.toml, decrypts the issuers, opens the stores and builds the configured
provisioners through the plugins; :class:`Authority` then makes the shared
:class:`hosts.service.ca.CA` and one object per use case, which the HTTP layer
(``hosts.http``), the command line and the background tasks call:

``signing`` (``/1.0/sign``), ``renewal`` (``/1.0/renew``), ``revocation``
(``/1.0/revoke``, operators, CRLs), ``attestation`` (``/attest``, ``/secret``),
``inventory`` (devices), ``certificates`` (the certificates issued), ``accounts``
(device accounts), ``admin`` (who may use the admin API), ``acme`` (ACME's state and
validations) and ``auditor`` (the audit log).

Each service method is synchronous and meant to run in a worker thread (signing and
store commits block). Errors are ``ProtocolError``s that the HTTP layer turns into
responses in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509

from engine.errors import NotFound
from engine.pipeline import IssuedCertificate, Issuer
from engine.ports import Clock, Random
from hosts.remote import RemoteKeySets
from hosts.service.accounts import Accounts, device_accounts
from hosts.service.acme import ACMEService
from hosts.service.admin import AdminService
from hosts.service.attestation import AttestationService, load_attestation_policy
from hosts.service.ca import CA
from hosts.service.certificates import CertificateInventory
from hosts.service.inventory import ImportReport, Inventory
from hosts.service.lookup import StoreLookup
from hosts.service.provisioners import ProvisionerRegistry, load_provisioners
from hosts.service.renewal import RenewalService
from hosts.service.revocation import CertificateRevoker, RevocationService
from hosts.service.scep import SCEPService
from hosts.service.signing import SigningService
from hosts.store import Stores, open_sqlite
from hosts.validation import ValidationConfig
from plugins.base import Provisioner
from plugins.manager import PluginManager
from plugins.provisioner import AuthorizeContext, Lookup, ProvisionerEnvironment
from plugins.remote import RemoteKeys

from .config import Config, check_disabled_plugins, installed_plugins, load_config
from .pki import load_issuers
from .ports import SystemClock, SystemRandom
from .scep_ra import RAKeys
from .upgrade import upgrade_data_dir

log = logging.getLogger("devid.ca")

#: Who changes provisioners and EK roots: devid.toml, read again on SIGHUP.
CONFIG_ACTOR = "config:devid.toml"


def provisioner_environment(
    config: Config,
    password: bytes | None = None,
    lookup: Lookup | None = None,
    remote_keys: RemoteKeys | None = None,
) -> ProvisionerEnvironment:
    """What provisioners are built with: the data directory, the issuer names, the key
    password where the caller has it, and the CA's read-only lookup and remote key cache
    where it serves."""
    return ProvisionerEnvironment(
        data_dir=config.data_dir,
        issuers=frozenset(config.issuers),
        password=password,
        lookup=lookup,
        remote_keys=remote_keys,
    )


def configured_provisioners(
    config: Config,
    plugins: PluginManager,
    password: bytes | None,
    lookup: Lookup | None = None,
    remote_keys: RemoteKeys | None = None,
) -> dict[str, Provisioner]:
    """The provisioners devid.toml configures (``devid ca token`` reads them without a CA)."""
    return load_provisioners(
        config.provisioners,
        plugins,
        provisioner_environment(config, password, lookup, remote_keys),
    )


@attrs.frozen
class Reloaded:
    """What :meth:`Authority.reload` changed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    ek_roots: tuple[int, int]
    accounts: int

    def summary(self) -> str:
        """``provisioners +1 -0, ek roots 12 -> 13, accounts 3``"""
        return (
            f"provisioners +{len(self.added)} -{len(self.removed)},"
            f" ek roots {self.ek_roots[0]} -> {self.ek_roots[1]}, accounts {self.accounts}"
        )


class Authority:
    """A loaded CA: its shared parts (``ca``) and its services (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        root: x509.Certificate,
        issuers: Mapping[str, Issuer],
        provisioners: Mapping[str, Provisioner],
        plugins: PluginManager,
        stores: Stores,
        clock: Clock,
        random: Random,
        remote_keys: RemoteKeySets | None = None,
    ) -> None:
        self.config = config
        #: OpenID providers' metadata and keys, fetched for the provisioners that need them.
        self.remote_keys = remote_keys or RemoteKeySets(clock)
        lookup = StoreLookup(stores)
        registry = ProvisionerRegistry(
            provisioners,
            plugins=plugins,
            accounts=stores.accounts,
            env=provisioner_environment(config, lookup=lookup, remote_keys=self.remote_keys),
            agent_ca=issuers["agent"].certificate,
        )
        ca = CA(
            root=root,
            issuers=issuers,
            provisioners=registry,
            plugins=plugins,
            stores=stores,
            clock=clock,
            random=random,
            lookup=lookup,
        )
        self.ca = ca
        #: The audit log (``hosts.service.audit``), shared by every service.
        self.auditor = ca.auditor
        revoker = CertificateRevoker(stores, clock, ca.auditor)
        self.admin = AdminService(ca, config.admin.token_sha256)
        self.signing = SigningService(ca)
        self.renewal = RenewalService(ca)
        self.revocation = RevocationService(ca, revoker, self.admin)
        self.attestation = AttestationService(
            ca, load_attestation_policy(config.attestation, config.data_dir)
        )
        self.inventory = Inventory(stores, clock, audit=ca.auditor)
        self.accounts = Accounts(
            stores, clock, random, on_change=registry.sync_accounts, audit=ca.auditor
        )
        self.acme = ACMEService(ca, ValidationConfig.from_table(config.acme))
        self.certificates = CertificateInventory(ca)
        self.scep = SCEPService(
            ca,
            RAKeys(config.data_dir, lambda: self.password, random),
            crl=self.revocation.crl,
        )
        registry.sync_accounts()
        #: The CA keys' password, where :meth:`load` had it (:meth:`reload` needs it).
        self.password: bytes | None = None

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
        if plugins is None:
            check_disabled_plugins(config, installed_plugins())
            plugins = PluginManager(disabled=config.plugins_disabled)
        root, issuers = load_issuers(config, password)
        stores = stores or open_sqlite(config.store.path, synchronous=config.store.synchronous)
        clock = clock or SystemClock()
        remote_keys = RemoteKeySets(clock)
        try:
            provisioners = configured_provisioners(
                config, plugins, password, StoreLookup(stores), remote_keys
            )
            authority = cls(
                config=config,
                root=root,
                issuers=issuers,
                provisioners=provisioners,
                plugins=plugins,
                stores=stores,
                clock=clock,
                random=random or SystemRandom(),
                remote_keys=remote_keys,
            )
        except BaseException:
            stores.close()
            remote_keys.close()
            raise
        authority.password = password
        return authority

    def close(self) -> None:
        self.ca.stores.close()
        self.remote_keys.close()

    def reload(self) -> Reloaded:
        """Read devid.toml again and take its provisioners and attestation policy (EK
        roots), then rebuild the account provisioners from the store (``SIGHUP``).

        Everything is built before anything is replaced: an invalid configuration raises
        (``ConfigurationError`` or the plugin's error) and the running state stays. The
        CA's keys, stores, ``[server]``, ``[acme]``, ``[admin]`` and ``[plugins]`` need a
        restart.
        """
        config = load_config(self.config.data_dir)
        provisioners = configured_provisioners(
            config, self.plugins, self.password, self.lookup, self.remote_keys
        )
        policy = load_attestation_policy(config.attestation, config.data_dir)
        registry = self.ca.provisioners
        views_before = {
            name: p.public_view() for name, p in registry.all.items() if type(p).configurable
        }
        before = set(views_before)
        roots_before = len(self.attestation.policy.ek_roots)
        registry.replace_configured(provisioners)
        self.attestation.policy = policy
        self.config = config
        registry.sync_accounts()
        reloaded = Reloaded(
            added=tuple(sorted(set(provisioners) - before)),
            removed=tuple(sorted(before - set(provisioners))),
            ek_roots=(roots_before, len(policy.ek_roots)),
            accounts=sum(1 for p in registry.all.values() if not type(p).configurable),
        )
        self._audit_reload(reloaded, views_before, provisioners)
        return reloaded

    def _audit_reload(
        self,
        reloaded: Reloaded,
        views_before: Mapping[str, Mapping[str, Any]],
        provisioners: Mapping[str, Provisioner],
    ) -> None:
        """Provisioners added, removed or changed by editing devid.toml, in the audit log
        (the actor is the configuration file: who edited it is not known here)."""
        auditor = self.ca.auditor
        source = str(self.config.data_dir / "devid.toml")
        for name in reloaded.added:
            auditor.record(CONFIG_ACTOR, "provisioner.added", name, source=source)
        for name in reloaded.removed:
            auditor.record(CONFIG_ACTOR, "provisioner.removed", name, source=source)
        for name, provisioner in provisioners.items():
            if name in views_before and provisioner.public_view() != views_before[name]:
                auditor.record(CONFIG_ACTOR, "provisioner.changed", name, source=source)
        if reloaded.ek_roots[0] != reloaded.ek_roots[1]:
            auditor.record(
                CONFIG_ACTOR,
                "attestation.ek_roots.changed",
                "ek-roots",
                before=reloaded.ek_roots[0],
                after=reloaded.ek_roots[1],
            )

    # --- the shared parts, for the hosts, the command line and tests -----------------------

    @property
    def stores(self) -> Stores:
        return self.ca.stores

    @property
    def plugins(self) -> PluginManager:
        return self.ca.plugins

    @property
    def clock(self) -> Clock:
        return self.ca.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        """Tests move time: the services read the clock through the shared parts."""
        self.ca.clock = clock
        self.remote_keys.clock = clock

    @property
    def random(self) -> Random:
        return self.ca.random

    @property
    def issuers(self) -> dict[str, Issuer]:
        return self.ca.issuers

    @property
    def root(self) -> x509.Certificate:
        return self.ca.root

    @property
    def root_pem(self) -> str:
        return self.ca.root_pem

    @property
    def root_fingerprint(self) -> str:
        return self.ca.root_fingerprint

    @property
    def provisioners(self) -> dict[str, Provisioner]:
        """Every provisioner by name (configured and accounts'), as last built."""
        return self.ca.provisioners.all

    @provisioners.setter
    def provisioners(self, provisioners: dict[str, Provisioner]) -> None:
        self.ca.provisioners.all = provisioners

    @property
    def lookup(self) -> StoreLookup:
        return self.ca.lookup

    @property
    def base_urls(self) -> tuple[str, ...]:
        return self.ca.endpoints.base_urls

    def set_base_urls(self, urls: Sequence[str]) -> None:
        """The URLs clients reach this CA by; token audiences are built from them."""
        self.ca.endpoints.set_base_urls(urls)

    def context(self, path: str) -> AuthorizeContext:
        return self.ca.context(path)

    def record_issued(self, issued: IssuedCertificate) -> None:
        """Store a certificate the CA issued itself (its server certificate, admin
        certificates) and audit it."""
        self.ca.record_issued(issued)

    # --- small use cases that need the configuration ---------------------------------------

    def sync_inventory(self) -> ImportReport:
        """Pull devices from inventory-source plugins into the inventory."""
        rows = self.ca.plugins.inventory_devices(self.config.inventory)
        return self.inventory.upsert_many(rows)

    def device_accounts(
        self, peer_der: bytes | None, base_url: str = "", bearer: str | None = None
    ) -> dict[str, Any]:
        """``GET /api/v1/device/accounts``: a device's accounts, proven by mTLS with its
        certificate or by an x5c token its key signed."""
        return device_accounts(self.ca, peer_der, base_url, bearer)

    def root_by_fingerprint(self, sha256: str) -> str:
        if sha256.lower().replace(":", "") != self.ca.root_fingerprint:
            raise NotFound("no root with that fingerprint")
        return self.ca.root_pem
