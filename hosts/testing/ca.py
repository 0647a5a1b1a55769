"""A throw-away devid CA for a plugin's tests: the kit's one door into devid's host code.

:class:`LocalCA` is a CA in a directory of its own (``devid init`` with a known
password), loaded in this process exactly as ``devid serve`` loads it: the
installed plugins, the ``[[provisioners]]`` tables of its ``devid.toml``, the
SQLite store. Its methods are the operations the HTTP hosts call (sign, revoke,
renew) and what a test wants to look at afterwards (the stored certificates, a
provisioner's public view), in terms of :mod:`plugins.api` and ``cryptography``
only.

Everything else in :mod:`hosts.testing`'s kit (the pytest plugin, the
conformance suite, the helpers) and every plugin's tests go through this
class; this is the only module of the kit that imports devid's host internals,
so that when they move, only this module changes.

Refusals are raised as the CA raises them, as :class:`plugins.api.ProtocolError`
subclasses (``Unauthorized`` is a 401, ``Forbidden`` a 403, ``BadRequest`` a
400: ``exc.status``); a ``[[provisioners]]`` table the CA cannot load raises
:class:`plugins.api.ConfigurationError`.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.pipeline import IssuedCertificate
from hosts.core.authority import Authority, provisioner_environment
from hosts.core.config import CONFIG_NAME, load_config
from hosts.core.init import init_data_dir
from hosts.core.secrets import Password
from hosts.http import wire
from hosts.service.lookup import certificate_facts
from hosts.service.signing import route_credential
from plugins.api import (
    Authorization,
    AuthorizeContext,
    CertificateFacts,
    ConfigurationError,
    Credential,
    Provisioner,
    ProvisionerEnvironment,
)
from plugins.manager import PluginManager

#: The password of every kit CA's keys (the CA is thrown away after the test).
DEFAULT_PASSWORD = b"devid test kit: not a secret"
#: The base URL the in-process CA believes it is reached by: token audiences are
#: ``BASE_URL + path`` (``https://ca.test/1.0/sign``).
BASE_URL = "https://ca.test"
SIGN_PATH = "/1.0/sign"
REVOKE_PATH = "/1.0/revoke"

#: A requested bound: an absolute time, a duration from now, or the API's own text
#: (RFC 3339 or a duration such as ``"24h"``).
Bound = datetime | timedelta | str | None


@attrs.frozen
class Issued:
    """A certificate the CA issued, with the chain it answered with."""

    certificate: x509.Certificate
    pem: str
    #: The leaf first, then the issuing intermediate(s), as PEM.
    chain_pem: tuple[str, ...]

    @property
    def serial(self) -> int:
        return int(self.certificate.serial_number)

    @property
    def serial_hex(self) -> str:
        """The serial as the store keys it (lowercase hex)."""
        return format(self.serial, "x")

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


def bound_text(value: Bound) -> str | None:
    """A requested notBefore/notAfter as the sign API takes it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _issued(issued: IssuedCertificate) -> Issued:
    response = wire.chain_json(issued)
    leaf = str(response["crt"])
    chain = tuple(str(c) for c in response["certChain"])
    return Issued(x509.load_pem_x509_certificate(leaf.encode()), leaf, chain)


def _provided_names(plugin: object) -> tuple[set[str], set[str]]:
    """The provisioner type names (upper case) and attestation formats *plugin* provides."""
    types_hook = getattr(plugin, "devid_provisioner_types", None)
    formats_hook = getattr(plugin, "devid_attestation_formats", None)
    types = {str(t.type_name).upper() for t in types_hook()} if callable(types_hook) else set()
    formats = {str(f.format_name) for f in formats_hook()} if callable(formats_hook) else set()
    return types, formats


class LocalCA:
    """A devid CA in *data_dir*, loaded in this process (make one with :meth:`create`).

    Plugins a test registers (:meth:`register_plugin`) and provisioners it adds
    (:meth:`add_provisioner`) belong to this CA alone; nothing is registered
    globally, so nothing leaks into another test.
    """

    def __init__(self, data_dir: Path, password: bytes, *, base_url: str = BASE_URL) -> None:
        self.data_dir = data_dir
        self.password = password
        self.base_url = base_url.rstrip("/")
        self._plugins: list[tuple[object, str]] = []
        self._authority: Authority | None = None
        self.reload()

    @classmethod
    def create(
        cls, data_dir: Path, *, password: bytes = DEFAULT_PASSWORD, base_url: str = BASE_URL
    ) -> LocalCA:
        """``devid init`` in *data_dir* (new or empty) with *password*, then load it."""
        init_data_dir(data_dir, Password(password, "test"))
        return cls(data_dir, password, base_url=base_url)

    # --- the directory ---------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """``DATA_DIR/devid.toml``."""
        return self.data_dir / CONFIG_NAME

    @property
    def root_path(self) -> Path:
        """The CA's root certificate (PEM): what clients of this CA trust."""
        return load_config(self.data_dir).root.certificate

    @property
    def root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_path.read_bytes())

    def admin_token(self) -> str:
        """The bearer token of the admin API (``Authorization: Bearer ...``)."""
        return (self.data_dir / "secrets" / "admin-token").read_text().strip()

    def config(self) -> dict[str, Any]:
        """``devid.toml`` as a dict (a copy: change it with :meth:`write_config`)."""
        return tomllib.loads(self.config_path.read_text())

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Replace ``devid.toml`` with *config* and reload; if the CA cannot load it, the
        previous file is put back and the error raised."""
        previous = self.config_path.read_text()
        self.config_path.write_text(tomli_w.dumps(dict(config)))
        try:
            self.reload()
        except BaseException:
            self.config_path.write_text(previous)
            self.reload()
            raise

    # --- loading -------------------------------------------------------------------------

    @property
    def authority(self) -> Authority:
        if self._authority is None:
            raise RuntimeError("this CA is closed")
        return self._authority

    def _plugin_manager(self) -> PluginManager:
        manager = PluginManager(disabled=load_config(self.data_dir).plugins_disabled)
        for plugin, name in self._plugins:
            self._register(manager, plugin, name)
        return manager

    @staticmethod
    def _register(manager: PluginManager, plugin: object, name: str) -> None:
        """Register *plugin* as *name* on *manager*, where the installed plugins are loaded.

        A plugin that is also installed is loaded once: the same module (by name), or
        any plugin registered as *name*, or providing a provisioner type or attestation
        format *plugin* provides, gives way to *plugin*.
        """
        types, formats = _provided_names(plugin)
        module = plugin.__name__ if isinstance(plugin, ModuleType) else None
        for info in manager.plugins():
            same_module = module is not None and info.module == module
            if same_module and info.name == name:
                return  # the installed plugin is this very module, under this name
            overlaps = {t.upper() for t in info.provisioner_types} & types or (
                set(info.attestation_formats) & formats
            )
            if same_module or info.name == name or overlaps:
                manager.unregister(info.name)
        if manager.is_registered(name):  # a hidden one ("_name") of the same name
            manager.unregister(name)
        manager.register(plugin, name=name)

    def reload(self) -> None:
        """Load the CA again from its directory (after a change to ``devid.toml``)."""
        manager = self._plugin_manager()
        authority = Authority.load(self.data_dir, self.password, plugins=manager)
        authority.set_base_urls([self.base_url])
        self.close()
        self._authority = authority

    def close(self) -> None:
        """Close the store (the directory stays until the test's tmp dir goes)."""
        if self._authority is not None:
            self._authority.close()
            self._authority = None

    # --- plugins and provisioners ------------------------------------------------------------

    def register_plugin(self, plugin: object, name: str) -> None:
        """Load *plugin* (a module or object with ``@hookimpl`` functions) into this CA as
        *name*, in addition to the installed plugins, and reload.

        An installed plugin is not loaded twice: if *plugin* is installed too (its entry
        point names the same module), or another loaded plugin has the name *name* or
        provides one of *plugin*'s provisioner types, *plugin* takes its place. A plugin
        devid refuses (a misspelt hook, a type that is no Provisioner) raises
        ConfigurationError, and the CA stays as it was.
        """
        entry = (plugin, name)
        self._plugins = [p for p in self._plugins if p[1] != name]
        self._plugins.append(entry)
        try:
            self.reload()
        except BaseException:
            self._plugins.remove(entry)
            self.reload()
            raise

    def unregister_plugin(self, name: str) -> None:
        """Forget a plugin :meth:`register_plugin` added, and reload."""
        self._plugins = [p for p in self._plugins if p[1] != name]
        self.reload()

    def provisioner_types(self) -> dict[str, type[Provisioner]]:
        """Every provisioner type this CA loaded, by type name."""
        return {cls.type_name: cls for cls in self.authority.plugins.provisioner_types().values()}

    def plugin_names(self) -> list[str]:
        """The plugins this CA loaded (as ``devid plugins`` names them)."""
        return [info.name for info in self.authority.plugins.plugins()]

    def add_provisioner(self, table: Mapping[str, Any]) -> Provisioner:
        """Append *table* to ``devid.toml`` as a ``[[provisioners]]`` table, reload, and
        return the provisioner built from it. A table the CA refuses raises
        ConfigurationError and leaves ``devid.toml`` as it was."""
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a [[provisioners]] table needs a string name")
        config = self.config()
        config.setdefault("provisioners", []).append(dict(table))
        self.write_config(config)
        return self.provisioner(name)

    def remove_provisioner(self, name: str) -> None:
        """Remove the ``[[provisioners]]`` table named *name* and reload."""
        config = self.config()
        tables = config.get("provisioners", [])
        kept = [t for t in tables if t.get("name") != name]
        if len(kept) == len(tables):
            raise KeyError(f"no [[provisioners]] table is named {name!r}")
        config["provisioners"] = kept
        self.write_config(config)

    def provisioner_table(self, name: str) -> dict[str, Any] | None:
        """The ``[[provisioners]]`` table named *name*, as written, or None."""
        for table in self.config().get("provisioners", []):
            if table.get("name") == name:
                return dict(table)
        return None

    def provisioner(self, name: str) -> Provisioner:
        """The loaded provisioner named *name* (KeyError if there is none)."""
        found = self.authority.ca.provisioners.named(name)
        if found is None:
            raise KeyError(f"this CA has no provisioner named {name!r}")
        return found

    def environment(self) -> ProvisionerEnvironment:
        """What a provisioner type is built with here (``from_config``,
        ``default_config``), with the key password as ``devid init`` has it."""
        authority = self.authority
        return provisioner_environment(
            authority.config, self.password, authority.lookup, authority.remote_keys
        )

    def provisioners_view(self) -> list[dict[str, Any]]:
        """What ``GET /provisioners`` answers: every provisioner's ``public_view()``."""
        return self.authority.ca.provisioners.view()

    # --- time and audiences ----------------------------------------------------------------

    def now(self) -> datetime:
        """The CA's clock."""
        return self.authority.clock.now()

    def audience(self, path: str = SIGN_PATH) -> str:
        """The token audience the CA accepts on *path* (``https://ca.test/1.0/sign``)."""
        return f"{self.base_url}{path}"

    def context(self, path: str = SIGN_PATH, *, now: datetime | None = None) -> AuthorizeContext:
        """What the CA hands ``authorize_*`` for a request on *path* (at *now*, default
        the CA's clock)."""
        context = self.authority.context(path)
        return context if now is None else AuthorizeContext(now=now, audiences=context.audiences)

    # --- the operations ----------------------------------------------------------------------

    def sign(
        self,
        csr_pem: str,
        credential: str,
        not_before: Bound = None,
        not_after: Bound = None,
    ) -> Issued:
        """``POST /1.0/sign``: issue a certificate for *csr_pem* on *credential*."""
        body: dict[str, Any] = {"csr": csr_pem, "ott": credential}
        for key, value in (("notBefore", not_before), ("notAfter", not_after)):
            text = bound_text(value)
            if text is not None:
                body[key] = text
        request = wire.sign_request(body, self.now())
        return _issued(self.authority.signing.sign(request))

    def route(self, credential: str) -> tuple[Provisioner, Credential]:
        """The provisioner *credential* addresses and its type's reading of it, as the CA
        routes ``POST /1.0/sign`` (nothing verified yet)."""
        return route_credential(self.authority.ca, credential)

    def authorize(
        self,
        credential: str,
        csr_pem: str,
        *,
        path: str = SIGN_PATH,
        now: datetime | None = None,
    ) -> Authorization:
        """What the addressed provisioner's ``authorize_sign`` answers for *credential*
        and *csr_pem* (at *now*), without signing, storing or marking anything used."""
        csr = wire.sign_request({"csr": csr_pem, "ott": credential}, self.now()).csr
        provisioner, reading = self.route(credential)
        return provisioner.authorize_sign(reading, csr, self.context(path, now=now))

    def revoke(
        self,
        serial: int,
        credential: str | None = None,
        *,
        reason: str | None = None,
        reason_code: int | None = None,
    ) -> None:
        """``POST /1.0/revoke`` with a token (*credential*) of the provisioner that issued
        the certificate; without one, as an operator (``devid`` admin API)."""
        body: dict[str, Any] = {"serial": str(serial)}
        if reason is not None:
            body["reason"] = reason
        if reason_code is not None:
            body["reasonCode"] = reason_code
        if credential is not None:
            body["ott"] = credential
        request = wire.revoke_request(body)
        if credential is not None:
            self.authority.revocation.revoke(request, None)
        else:
            self.authority.revocation.admin_revoke(
                request.serial, request.reason_code, request.reason, "admin:test"
            )

    def renew(self, certificate: x509.Certificate | bytes) -> Issued:
        """``POST /1.0/renew``, as a client presenting *certificate* over mTLS would."""
        der = (
            certificate.public_bytes(Encoding.DER)
            if isinstance(certificate, x509.Certificate)
            else certificate
        )
        return _issued(self.authority.renewal.renew(der))

    # --- tokens of the built-in JWK provisioner -----------------------------------------------

    def mint_token(
        self,
        subject: str,
        sans: Sequence[str] = (),
        *,
        provisioner: str = "admin",
        path: str = SIGN_PATH,
        audience: str | None = None,
        now: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        jti: str | None = None,
        csr_der: bytes | None = None,
    ) -> str:
        """A one-time token of a provisioner that mints them on the CA host (as ``devid
        ca token`` does; ``admin``, the JWK provisioner ``devid init`` makes, by default)."""
        minter = self.provisioner(provisioner).token_minter(self.password)
        if minter is None:
            raise ConfigurationError(f"provisioner {provisioner!r} mints no tokens")
        return minter.mint(
            subject=subject,
            audience=audience if audience is not None else self.audience(path),
            now=now if now is not None else self.now(),
            jti=jti if jti is not None else uuid.uuid4().hex,
            sans=tuple(sans),
            lifetime=lifetime,
            csr_der=csr_der,
        )

    # --- what the store holds ---------------------------------------------------------------

    def certificate_count(self) -> int:
        """How many certificates the CA has stored."""
        return self.authority.stores.certificates.count_certificates()

    def certificates(self) -> list[CertificateFacts]:
        """Every stored certificate's record, oldest first."""
        store = self.authority.stores.certificates
        found: list[CertificateFacts] = []
        while True:
            page = store.list_certificates(limit=100, offset=len(found))
            found.extend(certificate_facts(r) for r in page)
            if len(page) < 100:
                return found

    def certificate(self, serial: int | str) -> CertificateFacts | None:
        """The record of the certificate with *serial* (an int, or lowercase hex)."""
        key = format(serial, "x") if isinstance(serial, int) else serial.lower()
        record = self.authority.stores.certificates.get_certificate(key)
        return None if record is None else certificate_facts(record)

    def __enter__(self) -> LocalCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
