"""The first table of a run: server CPU per operation on every path a fleet uses, next to
the crypto-only cost of the same operation measured in the same run, and the target
issue 13 sets for each (a benchmark figure, never a timed test).

Each row is computed from the sections' JSON; a row whose section did not run (or did not
measure that figure) says so rather than being left out, so the table always shows every
target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .format import Table, level_at, lookup, meets_target, number


@dataclass(frozen=True)
class Target:
    """One figure issue 13 names: its label, the bound, and whether it is a floor."""

    label: str
    bound: float
    at_least: bool
    unit: str

    @property
    def text(self) -> str:
        sign = "≥" if self.at_least else "≤"
        return f"{sign} {number(self.bound, 1 if self.bound < 10 else 0)}{self.unit}"


IN_PROCESS = Target("P-256 issuance, in process: CPU µs per issuance", 350, False, " µs")
RAW_HOST = Target(
    "P-256 issuance, raw host at its best level: server CPU µs per issuance", 450, False, " µs"
)
ACME_CPU = Target("ACME order (http-01): server CPU per order, devid ÷ pebble", 1.0, False, "")
ACME_RATE = Target("ACME orders/s, devid ÷ pebble (raw host, one worker)", 1.2, True, "")
DEVICE_ATTEST = Target("device-attest-01: server CPU per validation", 1.0, False, " ms")
AK_ENROLMENT = Target("AK enrolment (both requests): server CPU per enrolment", 1.5, False, " ms")
ACCOUNT_CERT = Target(
    "account certificate over mTLS: server CPU per certificate", 600, False, " µs"
)

HEADERS = ["path", "measured", "crypto-only", "crypto ÷ CPU", "target", "meets", "measured as"]

Row = list[str]


def _share(crypto: Any, cpu: Any) -> str:
    if isinstance(crypto, int | float) and isinstance(cpu, int | float) and cpu > 0:
        return number(crypto / cpu, 2)
    return "-"


def _missing(target: Target, why: str) -> Row:
    return [target.label, "not measured", "-", "-", target.text, "-", why]


def _row(target: Target, value: Any, unit: str, crypto: Any, how: str) -> Row:
    """A row for *value* (in the target's unit) with its crypto-only cost in the same unit."""
    return [
        target.label,
        f"{number(value, 2 if unit == ' ms' else 0)}{unit}",
        "-" if crypto is None else f"{number(crypto, 2 if unit == ' ms' else 0)}{unit}",
        _share(crypto, value),
        target.text,
        meets_target(value, target.bound, target.at_least),
        how,
    ]


def _in_process(results: dict[str, Any]) -> list[Row]:
    p256 = lookup(results, "inprocess", "key_types", "P-256")
    full = (p256 or {}).get("sync_full") or {}
    cpu = full.get("cpu_us_per_issuance")
    if cpu is None:
        return [_missing(IN_PROCESS, "the inprocess section did not run with P-256")]
    store = lookup(results, "breakdown", "store_cpu_us")
    how = "sign_body, one caller, sync=full: the process's user + system time per issuance"
    if store is not None:
        how += f"; of it the store {number(store, 0)} µs (breakdown section)"
    return [_row(IN_PROCESS, cpu, " µs", lookup(p256, "crypto", "sum_us"), how)]


def _raw_host(results: dict[str, Any]) -> list[Row]:
    raw = lookup(results, "http", "hosts", "raw")
    best = (raw or {}).get("best") or {}
    level = level_at(raw, int(best.get("concurrency") or 0)) if best else None
    cpu_ms = (level or {}).get("server_cpu_ms_per_issuance")
    if cpu_ms is None:
        return [_missing(RAW_HOST, "the http section did not run the raw host")]
    crypto = lookup(results, "inprocess", "key_types", "P-256", "crypto", "sum_us")
    return [
        _row(
            RAW_HOST,
            float(cpu_ms) * 1e3,
            " µs",
            crypto,
            f"devid serve --host raw, {number(best.get('issuances_per_s'))}/s at"
            f" c={best.get('concurrency')}: server user + system time ÷ issuances",
        )
    ]


def _acme_level(acme: dict[str, Any], label: str, concurrency: int) -> dict[str, Any] | None:
    return level_at(lookup(acme, "servers_by_label", label), concurrency)


def _acme(results: dict[str, Any]) -> list[Row]:
    acme = results.get("acme") or {}
    if not acme.get("servers_by_label"):
        why = "the acme section did not run (pebble missing?)"
        return [_missing(ACME_CPU, why), _missing(ACME_RATE, why)]
    levels = sorted(
        {
            int(lv["concurrency"])
            for lv in lookup(acme, "servers_by_label", "pebble", "levels") or []
        }
    )
    rows: list[Row] = []
    # CPU per order: at the highest level both ran (each server busiest, most comparable).
    cpu_row: Row | None = None
    for concurrency in reversed(levels):
        devid = _acme_level(acme, "devid-raw", concurrency)
        pebble = _acme_level(acme, "pebble", concurrency)
        ours = (devid or {}).get("server_cpu_ms_per_order")
        theirs = (pebble or {}).get("server_cpu_ms_per_order")
        if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs > 0:
            crypto = lookup(acme, "crypto", "ms_per_order")
            cpu_row = [
                ACME_CPU.label,
                number(ours / theirs, 2),
                "-" if crypto is None else f"{number(crypto, 2)} ms",
                _share(crypto, ours),
                ACME_CPU.text,
                meets_target(ours / theirs, ACME_CPU.bound, False),
                f"raw host at c={concurrency}: {number(ours, 2)} ms vs pebble's"
                f" {number(theirs, 2)} ms of server CPU per complete order",
            ]
            break
    rows.append(cpu_row or _missing(ACME_CPU, "no level where both devid-raw and pebble ran"))
    ratio = lookup(acme, "ratios", "raw")
    devid_best = lookup(acme, "servers_by_label", "devid-raw", "best") or {}
    pebble_best = lookup(acme, "servers_by_label", "pebble", "best") or {}
    if ratio and ratio.get("best") is not None:
        rows.append(
            [
                ACME_RATE.label,
                number(ratio["best"], 2),
                "-",
                "-",
                ACME_RATE.text,
                meets_target(ratio["best"], ACME_RATE.bound, True),
                f"best levels: {number(devid_best.get('orders_per_s'))}/s at"
                f" c={devid_best.get('concurrency')} vs pebble's"
                f" {number(pebble_best.get('orders_per_s'))}/s at"
                f" c={pebble_best.get('concurrency')}",
            ]
        )
    else:
        rows.append(_missing(ACME_RATE, "the acme section did not run the raw host"))
    return rows


def _device_attest(results: dict[str, Any]) -> list[Row]:
    device = lookup(results, "attestation", "device_attest") or {}
    levels = [
        lv
        for lv in device.get("validation_levels") or []
        if isinstance(lv.get("server_cpu_ms_per_validation"), int | float)
    ]
    if not levels:
        return [_missing(DEVICE_ATTEST, "the attestation section did not run (swtpm missing?)")]
    first = min(levels, key=lambda lv: int(lv["concurrency"]))
    split = device.get("server_cpu_split_ms") or {}
    how = f"challenge POSTs at c={first['concurrency']}, attestation objects prepared first"
    if split:
        how += "; " + ", ".join(
            f"{k.replace('_', ' ')} {number(v, 2)} ms" for k, v in split.items()
        )
    return [
        _row(
            DEVICE_ATTEST,
            first["server_cpu_ms_per_validation"],
            " ms",
            device.get("crypto_ms_per_validation"),
            how,
        )
    ]


def _ak_enrolment(results: dict[str, Any]) -> list[Row]:
    runs = lookup(results, "attestation", "ek_types") or {}
    rows: list[Row] = []
    for ek, run in runs.items():
        cpu = lookup(run, "cpu_ms_per_enrolment", "server")
        if cpu is None:
            continue
        rows.append(
            _row(
                AK_ENROLMENT,
                cpu,
                " ms",
                run.get("crypto_ms_per_enrolment"),
                f"{ek} EK against swtpm: POST /attest + POST /secret and their TLS connection"
                + "".join(
                    f"; {k.replace('_', ' ')} {number(v, 2)} ms"
                    for k, v in (run.get("server_cpu_split_ms") or {}).items()
                ),
            )
        )
        rows[-1][0] = f"AK enrolment ({ek} EK, both requests): server CPU per enrolment"
    return rows or [_missing(AK_ENROLMENT, "the attestation section did not run (swtpm missing?)")]


def _accounts(results: dict[str, Any]) -> list[Row]:
    accounts = results.get("accounts") or {}
    rows: list[Row] = []
    for kind in ("issuance", "renewal"):
        figures = lookup(accounts, "kinds", kind) or {}
        cpu = figures.get("server_cpu_us_per_certificate")
        if cpu is None:
            continue
        rows.append(
            _row(
                ACCOUNT_CERT,
                cpu,
                " µs",
                figures.get("crypto_us_per_certificate"),
                f"{kind} through the raw host at c={figures.get('concurrency')}",
            )
        )
        rows[-1][0] = f"{ACCOUNT_CERT.label}: {kind}"
    return rows or [_missing(ACCOUNT_CERT, "the accounts section did not run")]


SOURCES: tuple[Callable[[dict[str, Any]], list[Row]], ...] = (
    _in_process,
    _raw_host,
    _acme,
    _device_attest,
    _ak_enrolment,
    _accounts,
)


def targets_table(results: dict[str, Any]) -> Table:
    """Every target of issue 13 with what this run measured."""
    t = Table(
        "Server CPU per operation (issue 13 targets; measured on this machine, not enforced)",
        HEADERS,
    )
    for source in SOURCES:
        t.rows.extend(source(results))
    t.notes.append(
        "crypto-only: the public-key operations the server must do for one operation"
        " (signatures verified and made), timed alone with cryptography in the same run;"
        " crypto ÷ CPU is the share of the server's CPU they take"
    )
    t.notes.append(
        "server CPU: user + system time of the server process ÷ operations, the load"
        " generator excluded; misses are explained with their breakdowns in benchmarks/README.md"
    )
    return t
