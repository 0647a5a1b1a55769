"""Presenting results: aligned text tables, a markdown file, the JSON files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _rate(figures: dict[str, Any], spread_key: str) -> str:
    """A rate, with ``~`` when its repetitions spread too widely to trust the median."""
    text = _num(figures.get("issuances_per_s"))
    noisy = bool((figures.get(spread_key) or {}).get("noisy"))
    return f"{text}~" if noisy else text


NOISY_NOTE = (
    "~ repetitions spread by more than 25% (max-min vs median; see the JSON): the machine"
    " was busy or the disk's fsync latency varied; rerun on a quiet machine"
)


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.1f} MiB" if isinstance(kib, int | float) else "-"


def summary_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    fs = m.get("work_dir_filesystem") or {}
    cpus = m.get("cpus_usable") or m.get("cpu_count")
    git = m.get("git") or {}
    revision = f", devid {git['commit'][:10]}{'+dirty' if git.get('dirty') else ''}" if git else ""
    return (
        f"{results.get('mode', '?')} run{' (custom sizes)' if results.get('custom_sizes') else ''},"
        f" {results.get('started_at', '?')}: {cpus} CPUs"
        f" ({m.get('cpu_model') or m.get('machine', '?')}), Python {m.get('python', '?')},"
        f" cryptography {m.get('cryptography', '?')} ({m.get('openssl', '?')}),"
        f" SQLite {m.get('sqlite', '?')}, temp data on {fs.get('type', '?')}{revision}"
    )


def build_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    inprocess = results.get("inprocess")
    if inprocess and "key_types" in inprocess:
        p = inprocess["parameters"]
        t = Table(
            "In-process: Authority.sign (token + CSR + build + sign + SQLite), issuances/s",
            [
                "issuer",
                "sync=full/s",
                "sync=normal/s",
                "crypto limit/s",
                "full÷limit",
                "normal÷limit",
                "p50 ms",
                "p99 ms",
                "non-crypto µs",
            ],
        )
        for name, r in inprocess["key_types"].items():
            full = r.get("sync_full", {})
            normal = r.get("sync_normal", {})
            t.rows.append(
                [
                    name,
                    _rate(full, "per_repetition"),
                    _rate(normal, "per_repetition"),
                    _num(r["crypto"]["limit_per_s"]),
                    _num(full.get("ratio_to_crypto_limit"), 3),
                    _num(normal.get("ratio_to_crypto_limit"), 3),
                    _num(full.get("latency_ms", {}).get("p50"), 2),
                    _num(full.get("latency_ms", {}).get("p99"), 2),
                    _num(full.get("non_crypto_us_per_issuance"), 0),
                ]
            )
        t.notes.append(
            f"median of {p['repetitions']} x {p['issuances_per_repetition']} issuances;"
            f" {p['client_key_type']} client keys; ES256 tokens; latencies and non-crypto µs"
            " are for sync=full"
        )
        if any("~" in cell for row in t.rows for cell in row):
            t.notes.append(NOISY_NOTE)
        tables.append(t)
        c = Table(
            "Crypto-only limit: µs per operation (same keys, same run)",
            ["issuer", "token verify", "CSR verify", "issuer sign", "sum", "limit/s"],
        )
        for name, r in inprocess["key_types"].items():
            k = r["crypto"]
            c.rows.append(
                [
                    name,
                    _num(k["token_verify_us"]),
                    _num(k["csr_verify_us"]),
                    _num(k["issuer_sign_us"]),
                    _num(k["sum_us"]),
                    _num(k["limit_per_s"]),
                ]
            )
        tables.append(c)
    breakdown = results.get("breakdown")
    if breakdown and "stages" in breakdown:
        total = float(breakdown["authority_sign_us"])
        b = Table(
            f"Where the time goes: Authority.sign, {breakdown['key_type']} issuer,"
            f" sync={breakdown['sync']}, µs per issuance",
            ["function called by Authority.sign", "µs", "share"],
        )
        for stage in breakdown["stages"]:
            name = f"  └ {stage['name']}" if stage["parent"] else stage["name"]
            value = float(stage["us"])
            b.rows.append([name, _num(value), f"{100 * value / total:.0f}%"])
        b.rows.append(
            ["unaccounted (whole - top-level rows)", _num(breakdown["unaccounted_us"]), ""]
        )
        b.rows.append(["Authority.sign (timed whole)", _num(total), "100%"])
        b.notes.append("└ rows are part of the row above them")
        tables.append(b)
    profile = results.get("profile")
    if profile and "groups" in profile:
        pr = Table(
            f"cProfile of Authority.sign ({profile['key_type']}, sync=full), cumulative µs"
            " per issuance incl. profiler overhead",
            ["function", "µs"],
        )
        for group in profile["groups"]:
            pr.rows.append([group["function"], _num(group["cumulative_us_per_issuance"])])
        pr.notes.append(f"full listing: {Path(profile['text']).name} next to this file")
        tables.append(pr)
    http = results.get("http")
    if http and "levels" in http:
        server = http["server"]
        ref = http["inprocess_reference"]
        h = Table(
            f"Through the {http['parameters']['host']} host: devid serve subprocess,"
            " HTTPS HTTP/1.1 keep-alive, P-256 issuer, sync=full",
            [
                "concurrency",
                "requests",
                "issuances/s",
                "p50 ms",
                "p99 ms",
                "server CPU ms/iss",
                "server cores",
                "client CPU ms/iss",
                "host÷in-process",
            ],
        )
        for level in http["levels"]:
            lat = level.get("latency_ms", {})
            errors = f" ({level['errors']} errors)" if level["errors"] else ""
            h.rows.append(
                [
                    str(level["concurrency"]),
                    f"{level['ok']}{errors}",
                    _rate(level, "per_round"),
                    _num(lat.get("p50"), 2),
                    _num(lat.get("p99"), 2),
                    _num(level.get("server_cpu_ms_per_issuance"), 2),
                    _num(level.get("server_cpu_cores"), 2),
                    _num(level.get("client_cpu_ms_per_issuance"), 2),
                    _num(level.get("ratio_to_inprocess"), 3),
                ]
            )
        params = http["parameters"]
        h.notes.append(
            f"median of {params['rounds']} rounds per level (interleaved); requests = timed"
            " requests over all rounds"
        )
        h.notes.append(
            f"server peak RSS (VmHWM) {_mib(server.get('peak_rss_kib'))},"
            f" idle after start {_mib(server.get('idle_rss_kib'))};"
            f" in-process P-256 reference {_num(ref.get('issuances_per_s'))}/s"
            f" ({ref.get('source')})"
        )
        if any("~" in row[2] for row in h.rows):
            h.notes.append(NOISY_NOTE)
        tables.append(h)
    return tables


def _widths(table: Table) -> list[int]:
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def render_text(results: dict[str, Any]) -> str:
    lines = [f"devid benchmarks: {summary_line(results)}"]
    for table in build_tables(results):
        widths = _widths(table)
        lines.append("")
        lines.append(table.title)

        def fmt(cells: Sequence[str], widths: list[int] = widths) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        lines.append(fmt(table.headers))
        lines.extend(fmt(row) for row in table.rows)
        lines.extend(f"  {note}" for note in table.notes)
    for section, message in results.get("errors", {}).items():
        lines.append("")
        lines.append(f"{section}: FAILED: {message.splitlines()[0] if message else ''}")
    return "\n".join(lines) + "\n"


def render_markdown(results: dict[str, Any]) -> str:
    lines = [f"_devid benchmarks, {summary_line(results)}._"]
    for table in build_tables(results):
        lines.append("")
        lines.append(f"**{table.title}**")
        lines.append("")
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "|".join([":---", *["---:"] * (len(table.headers) - 1)]) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in table.rows)
        if table.notes:
            lines.append("")
            lines.extend(f"_{note}_" for note in table.notes)
    for section, message in results.get("errors", {}).items():
        lines.append("")
        lines.append(f"**{section} failed:** `{message.splitlines()[0] if message else ''}`")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(out_dir: Path, results: dict[str, Any], stamp: str) -> dict[str, Path]:
    """OUT/bench-STAMP.json, OUT/latest.json and OUT/latest.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    paths = {
        "json": out_dir / f"bench-{stamp}.json",
        "latest_json": out_dir / "latest.json",
        "latest_md": out_dir / "latest.md",
    }
    _write_atomic(paths["json"], text)
    _write_atomic(paths["latest_json"], text)
    _write_atomic(paths["latest_md"], render_markdown(results))
    return paths
