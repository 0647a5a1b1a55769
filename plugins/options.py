"""Reading provisioner option tables with clear errors (shared by every type)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from engine.durations import format_duration, parse_duration
from engine.errors import BadRequest, ConfigurationError
from engine.keys import KeyType
from engine.policy import DurationLimits


class Options:
    """A provisioner's option table that remembers which keys were read.

    ``finish()`` then rejects unknown keys, so a typo in ``devid.toml`` is an
    error at start-up instead of a silently ignored setting.
    """

    def __init__(self, where: str, table: Mapping[str, Any]) -> None:
        self.where = where
        self._table = dict(table)
        self._seen: set[str] = {"type", "name"}

    def get(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self._table.get(key, default)

    def require(self, key: str) -> Any:
        self._seen.add(key)
        if key not in self._table:
            raise ConfigurationError(f"{self.where}: missing required option {key!r}")
        return self._table[key]

    def string(self, key: str, default: str | None = None) -> str:
        value = self.get(key, default) if default is not None else self.require(key)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{self.where}: option {key!r} must be a non-empty string")
        return value

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """A list of non-empty strings (*default* when the key is absent)."""
        value = self.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(f"{self.where}: {key!r} must be a list of non-empty strings")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigurationError(f"{self.where}: option {key!r} must be true or false")
        return value

    def duration(self, key: str, default: str) -> timedelta:
        value = self.get(key, default)
        try:
            return parse_duration(value)
        except BadRequest as exc:
            raise ConfigurationError(f"{self.where}: option {key!r}: {exc.detail}") from None

    def durations(self, defaults: DurationLimits) -> DurationLimits:
        table = self.get("durations", {})
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{self.where}: 'durations' must be a table")
        sub = Options(f"{self.where}.durations", table)
        limits = DurationLimits(
            minimum=sub.duration("min", format_duration(defaults.minimum)),
            maximum=sub.duration("max", format_duration(defaults.maximum)),
            default=sub.duration("default", format_duration(defaults.default)),
            skew=sub.duration("skew", format_duration(defaults.skew)),
        )
        sub.finish()
        return limits

    def issuer(self, issuers: Collection[str], default: str = "tls") -> str:
        """``issuer``: one of *issuers* (the CA's intermediates, ``env.issuers``)."""
        issuer = self.string("issuer", default)
        if issuer not in issuers:
            raise ConfigurationError(
                f"{self.where}: issuer {issuer!r} is not one of {', '.join(sorted(issuers))}"
            )
        return issuer

    def template_ekus(self, default: Sequence[str] = ("clientAuth",)) -> list[Any]:
        """The ``[template]`` table's ``ekus`` list (names or dotted OIDs, unparsed); the
        table may hold nothing else."""
        template = self.get("template", {})
        if not isinstance(template, Mapping):
            raise ConfigurationError(f"{self.where}: 'template' must be a table")
        template_opts = Options(f"{self.where}.template", template)
        ekus = template_opts.get("ekus", list(default))
        if not isinstance(ekus, list):
            raise ConfigurationError(f"{self.where}.template: 'ekus' must be a list")
        template_opts.finish()
        return ekus

    def key_types(self, key: str = "key_types") -> frozenset[KeyType]:
        value = self.get(key, [k.value for k in KeyType])
        if not isinstance(value, list) or not value:
            raise ConfigurationError(f"{self.where}: {key!r} must be a non-empty list")
        return frozenset(KeyType.parse(str(v)) for v in value)

    def finish(self) -> None:
        unknown = sorted(set(self._table) - self._seen)
        if unknown:
            raise ConfigurationError(f"{self.where}: unknown option(s) {', '.join(unknown)}")


def durations_view(limits: DurationLimits) -> dict[str, str]:
    return {
        "min": format_duration(limits.minimum),
        "max": format_duration(limits.maximum),
        "default": format_duration(limits.default),
    }
