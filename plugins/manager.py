"""The typed plugin manager: the only code that calls ``pm.hook``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy

from engine.csr import CSRInfo
from engine.errors import ConfigurationError
from engine.policy import SignPolicy

from . import hookspecs
from .provisioner import Provisioner, ProvisionerType

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

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object directly (tests, embedding)."""
        if name is not None and name in self.disabled:
            return
        self._pm.register(plugin, name=name)

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)

    def _types_of(self, plugin: object) -> tuple[type[ProvisionerType], ...]:
        impl = getattr(plugin, "devid_provisioner_types", None)
        return tuple(impl()) if callable(impl) else ()

    def _formats_of(self, plugin: object) -> tuple[Any, ...]:
        impl = getattr(plugin, "devid_attestation_formats", None)
        return tuple(impl()) if callable(impl) else ()

    def provisioner_types(self) -> dict[str, type[ProvisionerType]]:
        """Every registered provisioner type, by type name (case-insensitive keys)."""
        found: dict[str, type[ProvisionerType]] = {}
        for group in self._pm.hook.devid_provisioner_types():
            for cls in group:
                key = cls.type_name.upper()
                if key in found and found[key] is not cls:
                    raise ConfigurationError(
                        f"two plugins register the provisioner type {cls.type_name!r}"
                    )
                found[key] = cls
        return found

    def provisioner_type(self, type_name: str) -> type[ProvisionerType]:
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

    def inventory_devices(self, source_config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every device record that inventory-source plugins report, in plugin order."""
        records: list[Mapping[str, Any]] = []
        for batch in self._pm.hook.devid_inventory_devices(source_config=dict(source_config)):
            records.extend(batch)
        return records

    def audit(self, event: str, fields: Mapping[str, Any]) -> None:
        try:
            self._pm.hook.devid_audit(event=event, fields=dict(fields))
        except Exception:
            log.exception("audit hook failed for %s", event)

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
