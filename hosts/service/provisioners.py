"""The provisioners of one CA: those devid.toml configures, and one per device account.

:func:`load_provisioners` builds the configured ones through the plugin manager (each
``[[provisioners]]`` table by its type; types devid builds itself are refused there) and
keeps each to what its issuer vouches for (:mod:`hosts.service.issuer_scope`).
:class:`ProvisionerRegistry` holds them with the account provisioners (``account:NAME``,
built by the account plugin's type from the stored accounts) and rebuilds the latter when
accounts change. Nothing here names a provisioner class: types come from the plugins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.accounts import PROVISIONER_PREFIX, Account, check_name
from engine.errors import BadRequest, ConfigurationError
from hosts.store import DeviceAccountStore
from plugins.base import ACMEIssuing, Provisioner
from plugins.manager import PluginManager
from plugins.provisioner import ProvisionerEnvironment

from .issuer_scope import check_provisioner_issuer

log = logging.getLogger("devid.ca")

# The type of the account plugin's provisioners (plugins/accounts), built by the host.
ACCOUNT_PROVISIONER_TYPE = "ACCOUNT"


def load_provisioners(
    tables: Sequence[Mapping[str, Any]], plugins: PluginManager, env: ProvisionerEnvironment
) -> dict[str, Provisioner]:
    """The provisioners the ``[[provisioners]]`` *tables* configure, by name."""
    found: dict[str, Provisioner] = {}
    for table in tables:
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
    addresses(found)
    return found


def addresses(provisioners: Mapping[str, Provisioner]) -> dict[str, Provisioner]:
    """The provisioners by the credential addresses they answer to besides their names;
    refuses an address two of them claim, or one that is another provisioner's name."""
    found: dict[str, Provisioner] = {}
    for provisioner in provisioners.values():
        for address in provisioner.credential_addresses():
            other = found.get(address) or provisioners.get(address)
            if other is not None and other is not provisioner:
                raise ConfigurationError(
                    f"provisioners {other.name!r} and {provisioner.name!r} both take the"
                    f" credentials addressed to {address!r}; give each its own"
                )
            found[address] = provisioner
    return found


class ProvisionerRegistry:
    """Every provisioner of the CA by name; the account ones follow the stored accounts.

    ``all`` is rebound in one step when accounts change, so a reader sees the old or the
    new set, never half of one.
    """

    def __init__(
        self,
        configured: Mapping[str, Provisioner],
        *,
        plugins: PluginManager,
        accounts: DeviceAccountStore,
        env: ProvisionerEnvironment,
        agent_ca: x509.Certificate,
    ) -> None:
        self.all: dict[str, Provisioner] = dict(configured)
        self._plugins = plugins
        self._accounts = accounts
        self._env = env
        self._agent_pem = agent_ca.public_bytes(Encoding.PEM).decode()
        self._lock = threading.Lock()
        self._built: tuple[tuple[str, str, str], ...] | None = None
        # The provisioner types asked to read each credential (/1.0/sign, revocation).
        self._types: tuple[type[Provisioner], ...] = tuple(plugins.provisioner_types().values())
        self._ordered: tuple[dict[str, Provisioner], tuple[type[Provisioner], ...]] | None = None
        self._addressed: tuple[dict[str, Provisioner], dict[str, Provisioner]] | None = None

    @property
    def credential_types(self) -> tuple[type[Provisioner], ...]:
        """Every provisioner type, in the order they are asked to read a credential: those
        that a provisioner here is an instance of first (one of them is the one a valid
        credential reaches), then the others, each group in the plugins' order. A type no
        provisioner here belongs to can read a credential but never take it, so it is
        asked only after the types that can (for the error it gives, or the name it reads).
        """
        current = self.all
        cached = self._ordered
        if cached is not None and cached[0] is current:
            return cached[1]
        provisioners = tuple(current.values())
        used = tuple(cls for cls in self._types if any(isinstance(p, cls) for p in provisioners))
        order = used + tuple(cls for cls in self._types if cls not in used)
        self._ordered = (current, order)
        return order

    # --- lookups -----------------------------------------------------------------------------

    def get(self, name: str) -> Provisioner | None:
        """The provisioner named *name* as last built (no store read)."""
        return self.all.get(name)

    def named(self, name: str) -> Provisioner | None:
        """A configured provisioner by its name or a credential address it answers to
        (:meth:`plugins.base.Provisioner.credential_addresses`), or an account's (also one
        another process added)."""
        current = self.all
        found = current.get(name)
        if found is not None:
            return found
        cached = self._addressed
        if cached is None or cached[0] is not current:
            cached = (current, addresses(current))
            self._addressed = cached
        found = cached[1].get(name)
        return found if found is not None else self._find_account(name)

    def acme(self, name: str) -> ACMEIssuing | None:
        """The provisioner *name* as an ACME directory, if it serves one."""
        found = self.all.get(name)
        return found.acme() if found is not None else None

    def view(self) -> list[dict[str, Any]]:
        """What ``GET /provisioners`` lists."""
        return [p.public_view() for p in self.all.values()]

    # --- account provisioners ----------------------------------------------------------------

    @staticmethod
    def _key(accounts: Sequence[Account]) -> tuple[tuple[str, str, str], ...]:
        return tuple(
            (a.id, a.name, a.updated_at.isoformat() if a.updated_at else "") for a in accounts
        )

    def sync_accounts(self, accounts: Sequence[Account] | None = None) -> None:
        """Rebuild the account provisioners from *accounts* (default: the store's)."""
        with self._lock:
            if accounts is None:
                accounts = self._accounts.list_accounts()
            account_type = self._plugins.provisioner_type(ACCOUNT_PROVISIONER_TYPE)
            # Configured provisioners stay; the host-built ones (accounts') are rebuilt.
            fresh = {name: p for name, p in self.all.items() if type(p).configurable}
            for account in accounts:
                name = account.provisioner_name
                if name in fresh:
                    log.error("a configured provisioner is named %r; that account is ignored", name)
                    continue
                fresh[name] = account_type.from_config(
                    name, {"account": account.name, "roots_pem": self._agent_pem}, self._env
                )
            self.all = fresh
            self._built = self._key(accounts)

    def replace_configured(self, configured: Mapping[str, Provisioner]) -> None:
        """Take a new set of configured provisioners (devid.toml read again); the
        account ones stay until the next :meth:`sync_accounts`."""
        with self._lock:
            fresh = dict(configured)
            for name, provisioner in self.all.items():
                if not type(provisioner).configurable and name not in fresh:
                    fresh[name] = provisioner
            self.all = fresh

    def sync_accounts_if_changed(self, accounts: Sequence[Account]) -> None:
        """Rebuild only if *accounts* differ from the last build (e.g. the CLI changed them
        while the server runs)."""
        if self._key(accounts) != self._built:
            self.sync_accounts(accounts)

    def _find_account(self, provisioner_name: str) -> Provisioner | None:
        """The provisioner of an account created since the last build (by the CLI, or by
        another worker process); None if there is no such account."""
        if not provisioner_name.startswith(PROVISIONER_PREFIX):
            return None
        name = provisioner_name[len(PROVISIONER_PREFIX) :]
        try:
            check_name(name)
        except BadRequest:
            return None
        if self._accounts.get_account(name) is None:
            return None
        self.sync_accounts()
        return self.all.get(provisioner_name)
