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


def rate_cell(figures: dict[str, Any], spread_key: str, rate_key: str = "issuances_per_s") -> str:
    """A rate, with ``~`` when its repetitions spread too widely to trust the median."""
    text = number(figures.get(rate_key))
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


def level_cells(level: dict[str, Any], rate_key: str) -> list[str]:
    """A concurrency level's first cells: concurrency, requests, rate (*rate_key*, ``~``
    when noisy), p50 ms, p99 ms."""
    return [
        str(level["concurrency"]),
        str(level["requests"]),
        rate_cell(level, "per_round", rate_key),
        number(lookup(level, "latency_ms", "p50"), 2),
        number(lookup(level, "latency_ms", "p99"), 2),
    ]


def pinning_note(pinning: dict[str, Any]) -> str:
    return (
        f"servers pinned to CPU {pinning['server_cpus']}, load generator to CPU"
        f" {pinning['client_cpus']}"
    )


def crypto_notes(kinds: dict[str, Any]) -> list[str]:
    """Per kind, the crypto-only µs of each public-key operation (its ``crypto`` figures)."""
    notes = []
    for kind, figures in kinds.items():
        crypto = figures.get("crypto") or {}
        parts = ", ".join(
            f"{name.removesuffix('_us').replace('_', ' ')} {number(value, 0)}"
            for name, value in crypto.items()
            if name.endswith("_us") and name != "sum_us"
        )
        notes.append(f"crypto-only µs, {kind}: {parts} (timed alone with cryptography)")
    return notes


# --- the sections measured by kind, in process and through each host (scep, oidc) ---------


def kind_table(title: str, section: dict[str, Any], ratio: tuple[str, str] | None = None) -> Table:
    """One row per kind in process, then per host, kind and concurrency level, with the
    CPU per request against the crypto-only cost; *ratio* (a header, an in-process key)
    adds a column after the CPU, "-" through a host."""
    t = Table(
        title,
        [
            "where",
            "kind",
            "concurrency",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            *([ratio[0]] if ratio else []),
            "crypto µs",
            "crypto÷CPU",
            "rest µs",
            "errors",
        ],
    )
    inprocess = section.get("inprocess") or {}
    for kind, figures in inprocess.get("kinds", {}).items():
        t.rows.append(
            [
                "in process",
                kind,
                "1",
                str(figures.get("calls")),
                rate_cell(figures, "per_repetition", "requests_per_s"),
                "-",
                "-",
                number(figures.get("cpu_us_per_request"), 0),
                *([number(figures.get(ratio[1]), 2)] if ratio else []),
                number(figures.get("crypto_us"), 0),
                number(figures.get("crypto_share"), 2),
                number(figures.get("rest_us"), 0),
                "0",
            ]
        )
    for host, result in section.get("hosts", {}).items():
        for kind, figures in result.get("kinds", {}).items():
            for level in figures.get("levels", []):
                t.rows.append(
                    [
                        f"{host} host",
                        kind,
                        *level_cells(level, "requests_per_s"),
                        number(level.get("server_cpu_us_per_request"), 0),
                        *(["-"] if ratio else []),
                        number(level.get("crypto_us"), 0),
                        number(level.get("crypto_share"), 2),
                        number(level.get("rest_us"), 0),
                        str(level["errors"]),
                    ]
                )
    return t


def kind_timing_note(how: str, params: dict[str, Any], besides: str = "") -> str:
    """How a :func:`kind_table`'s figures were taken: *how* is what is called in process;
    *besides*, what else the repetitions did (ending with "; ")."""
    return (
        f"in process: {how} one call at a time, median of"
        f" {params.get('inprocess_repetitions')} repetitions, CPU = this thread's;"
        f" {besides}through a host: median of {params.get('rounds')} rounds (hosts, kinds and"
        " levels interleaved), latencies pooled, CPU = user + system of the server process ÷"
        " requests (the load generator excluded)"
    )


def kind_table_end(t: Table, section: dict[str, Any]) -> None:
    """A :func:`kind_table`'s last notes: the in-process crypto, the pinning, the noise."""
    params = section.get("parameters", {})
    t.notes.extend(crypto_notes((section.get("inprocess") or {}).get("kinds", {})))
    pinning = params.get("pinning")
    if pinning:
        t.notes.append(pinning_note(pinning))
    if any(row[4].endswith("~") for row in t.rows):
        t.notes.append(NOISY_NOTE)
