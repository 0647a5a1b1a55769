"""What every table is made of: :class:`Table` and the formatting of its cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """One table: printed aligned on the terminal, as a pipe table in latest.md."""

    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def number(value: Any, digits: int = 1) -> str:
    """A figure with thousands separators and *digits* decimals; "-" for None."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def rate_cell(figures: dict[str, Any], spread_key: str) -> str:
    """A rate, with ``~`` when its repetitions spread too widely to trust the median."""
    text = number(figures.get("issuances_per_s"))
    noisy = bool((figures.get(spread_key) or {}).get("noisy"))
    return f"{text}~" if noisy else text


NOISY_NOTE = (
    "~ repetitions spread by more than 25% (max-min vs median; see the JSON): the machine"
    " was busy or the disk's fsync latency varied; rerun on a quiet machine"
)


#: Client cores above this: the load generator, pinned to one CPU, may be the bottleneck.
CLIENT_SATURATED = 0.85


def mib(kib: Any) -> str:
    """KiB as "12.3 MiB"; "-" when unknown."""
    return f"{kib / 1024:.1f} MiB" if isinstance(kib, int | float) else "-"


def lookup(data: Any, *keys: Any) -> Any:
    """data[k1][k2]... or None when any step is missing."""
    for key in keys:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_dict or in_list):
            return None
        data = data[key]
    return data


def meets_target(value: Any, target: float, at_least: bool) -> str:
    """Whether *value* is at least (or at most) *target*: yes, no, or "-" when unknown."""
    if not isinstance(value, int | float):
        return "-"
    return "yes" if (value >= target if at_least else value <= target) else "no"


def level_at(host: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    """A server's figures at one concurrency level, if measured."""
    for level in (host or {}).get("levels", []):
        if level.get("concurrency") == concurrency:
            return dict(level)
    return None
