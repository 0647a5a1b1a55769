"""Writing a run down: aligned text tables, a markdown file, the JSON files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .format import Table
from .tables import build_tables


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
    for section, message in results.get("skipped", {}).items():
        lines.append("")
        lines.append(f"{section}: not measured: {message}")
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
    plot = results.get("plot") or {}
    if plot.get("file"):
        lines.append("")
        lines.append(f"![throughput against concurrency]({plot['file']})")
    for section, message in results.get("skipped", {}).items():
        lines.append("")
        lines.append(f"**{section} not measured:** {message}")
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
