"""The typed plugin manager: the only code that calls ``pm.hook``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import pluggy

from engine.csr import CSRInfo
from engine.errors import ConfigurationError
from engine.policy import SignPolicy

from . import hookspecs
from .base import Provisioner, check_provisioner_class
from .enrolment import ChallengeQuery

log = logging.getLogger("devid.plugins")

ENTRY_POINT_GROUP = "devid"


@attrs.frozen
class PluginInfo:
    """One loaded plugin, as ``devid plugins`` shows it."""

    name: str
    module: str
    distribution: str | None
    provisioner_types: tuple[str, ...]
    attestation_formats: tuple[str, ...]


class PluginManager:
    """Loads devid plugins from the ``devid`` entry-point group and exposes typed hooks."""

    def __init__(self, *, disabled: Iterable[str] = (), load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.disabled = frozenset(disabled)
        for name in self.disabled:
            self._pm.set_blocked(name)
        if load_entry_points:
            self._pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        self._check_pending()

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object directly (tests, embedding)."""
        if name is not None and name in self.disabled:
            return
        self._pm.register(plugin, name=name)
        try:
            self._check_pending()
        except ConfigurationError:
            self._pm.unregister(plugin)
            raise

    def is_registered(self, name: str) -> bool:
        """Whether a plugin named *name* is registered (an installed one, or a test's)."""
        return self._pm.get_plugin(name) is not None

    def _check_pending(self) -> None:
        """Refuse implementations of hooks devid does not have (a misspelt name would
        otherwise register and never be called)."""
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("devid_")))
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:
                continue
            for attr in dir(plugin):
                if (
                    attr.startswith("devid_")
                    and not hasattr(hookspecs, attr)
                    and callable(getattr(plugin, attr, None))
                ):
                    raise ConfigurationError(
                        f"plugin {name!r} implements {attr!r}, which is not a devid hook"
                        f" (misspelt? the hooks are: {known})"
                    )
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin_name = self._pm.get_name(exc.plugin) or repr(exc.plugin)
            raise ConfigurationError(f"plugin {plugin_name!r}: {exc}") from None

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)

    def _types_of(self, plugin: object) -> tuple[type[Provisioner], ...]:
        impl = getattr(plugin, "devid_provisioner_types", None)
        return tuple(impl()) if callable(impl) else ()

    def _formats_of(self, plugin: object) -> tuple[Any, ...]:
        impl = getattr(plugin, "devid_attestation_formats", None)
        return tuple(impl()) if callable(impl) else ()

    def provisioner_types(self) -> dict[str, type[Provisioner]]:
        """Every registered provisioner type, by type name (case-insensitive keys)."""
        found: dict[str, type[Provisioner]] = {}
        for group in self._pm.hook.devid_provisioner_types():
            for cls in group:
                check_provisioner_class(cls)
                key = cls.type_name.upper()
                if key in found and found[key] is not cls:
                    raise ConfigurationError(
                        f"two plugins register the provisioner type {cls.type_name!r}"
                    )
                found[key] = cls
        return found

    def provisioner_type(self, type_name: str) -> type[Provisioner]:
        types = self.provisioner_types()
        try:
            return types[type_name.upper()]
        except KeyError:
            known = ", ".join(sorted(t.type_name for t in types.values())) or "none"
            raise ConfigurationError(
                f"no loaded plugin provides provisioner type {type_name!r} (loaded: {known});"
                " is its plugin installed and not disabled?"
            ) from None

    def attestation_formats(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for group in self._pm.hook.devid_attestation_formats():
            for fmt in group:
                name = str(fmt.format_name)
                if name in found:
                    raise ConfigurationError(f"two plugins register attestation format {name!r}")
                found[name] = fmt
        return found

    def check_sign(self, provisioner: Provisioner, csr: CSRInfo, policy: SignPolicy) -> None:
        self._pm.hook.devid_check_sign(provisioner=provisioner, csr=csr, policy=policy)

    def scep_challenge(self, query: ChallengeQuery) -> bool:
        """Whether the ``devid_scep_challenge`` hooks accept *query*'s challenge: some
        says True and none says False. A hook that raises refuses (and is logged)."""
        accepted = False
        for impl in self._pm.hook.devid_scep_challenge.get_hookimpls():
            try:
                verdict = impl.function(query=query)
            except Exception:
                log.exception("SCEP challenge hook of plugin %s failed", impl.plugin_name)
                return False
            if verdict is False:
                return False
            if verdict is True:
                accepted = True
        return accepted

    def inventory_devices(self, source_config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every device record that inventory-source plugins report, in plugin order."""
        records: list[Mapping[str, Any]] = []
        for batch in self._pm.hook.devid_inventory_devices(source_config=dict(source_config)):
            records.extend(batch)
        return records

    def audit(self, event: str, fields: Mapping[str, Any]) -> None:
        """Hand *event* to every ``devid_audit`` implementation, each on its own: one that
        raises is logged and the others are still called."""
        frozen = MappingProxyType(dict(fields))
        given = {"event": event, "fields": frozen}
        for impl in self._pm.hook.devid_audit.get_hookimpls():
            try:
                impl.function(**{name: given[name] for name in impl.argnames})
            except Exception:
                log.exception("audit hook of plugin %r failed for %s", impl.plugin_name, event)

    def plugins(self) -> list[PluginInfo]:
        dists = {id(plugin): dist for plugin, dist in self._pm.list_plugin_distinfo()}
        out = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None or name.startswith("_"):
                continue
            dist = dists.get(id(plugin))
            dist_name = None
            if dist is not None:
                dist_name = f"{dist.project_name} {dist.version}"
            out.append(
                PluginInfo(
                    name=name,
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    distribution=dist_name,
                    provisioner_types=tuple(t.type_name for t in self._types_of(plugin)),
                    attestation_formats=tuple(str(f.format_name) for f in self._formats_of(plugin)),
                )
            )
        return sorted(out, key=lambda p: p.name)
