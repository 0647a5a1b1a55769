"""The throughput plot: issuances/s against concurrency per host, and worker scaling.

Drawn with matplotlib's Agg backend (no display needed) from the results
dictionary alone, so a plot can be redrawn from any ``bench-*.json``::

    python -m benchmarks.report.plot benchmarks/results/latest.json out.png

Panels, each only when its section ran: (1) issuances/s against concurrency
for every host, with the spread of the rounds as error bars and the in-process
rate as a dashed line; (2) issuances/s against raw-host worker processes, with
perfect scaling from one worker dotted; (3) server RSS across the soak; (4) ACME
complete orders/s against concurrency for devid's hosts and pebble.
matplotlib is in the ``bench`` extra; without it the plot is skipped and the
reason recorded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = {
    "quart": "tab:blue",
    "raw": "tab:orange",
    "devid-quart": "tab:blue",
    "devid-raw": "tab:orange",
    "pebble": "tab:purple",
}


def missing() -> str | None:
    """Why no plot can be drawn here, or None."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'; `make bench` does)"
    return None


def _errors(levels: Sequence[dict[str, Any]], key: str = "issuances_per_s") -> list[list[float]]:
    below, above = [], []
    for level in levels:
        rate = float(level[key])
        spread = level.get("per_round") or {}
        below.append(max(0.0, rate - float(spread.get("min", rate))))
        above.append(max(0.0, float(spread.get("max", rate)) - rate))
    return [below, above]


def write_plot(results: dict[str, Any], path: Path) -> Path:
    """Draw the panels the results have data for into *path* (PNG)."""
    # Without the bench extra, mypy (like the import) finds no matplotlib: hence the ignores.
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    http = results.get("http") or {}
    hosts: dict[str, Any] = http.get("hosts") or {}
    scaling = results.get("scaling") or {}
    soak = results.get("soak") or {}
    acme: dict[str, Any] = (results.get("acme") or {}).get("servers_by_label") or {}
    panels = [
        name
        for name, present in (
            ("hosts", bool(hosts)),
            ("scaling", bool(scaling.get("workers"))),
            ("soak", bool(soak.get("checkpoints"))),
            ("acme", bool(acme)),
        )
        if present
    ]
    if not panels:
        raise ValueError("no host, scaling, soak or acme results to plot")
    figure, axes_array = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False
    )
    axes = list(axes_array[0])
    machine = results.get("machine") or {}
    cpus = machine.get("cpus_usable") or machine.get("cpu_count")
    figure.suptitle(
        f"devid JWK issuance (P-256 issuer, HTTPS)"
        f"{', ACME orders' if 'acme' in panels else ''}, {cpus} CPUs,"
        f" {results.get('mode', '?')} run {results.get('started_at', '')}",
        fontsize=10,
    )
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "hosts":
            for name, host in hosts.items():
                levels = [level for level in host["levels"] if level["ok"]]
                if not levels:
                    continue
                ax.errorbar(
                    [level["concurrency"] for level in levels],
                    [level["issuances_per_s"] for level in levels],
                    yerr=_errors(levels),
                    marker="o",
                    capsize=3,
                    label=f"{name} host",
                    color=COLOURS.get(name),
                )
            reference = (http.get("inprocess_reference") or {}).get("issuances_per_s")
            if reference:
                ax.axhline(reference, linestyle="--", color="grey", label="in-process sign_body")
            ax.set_xscale("log", base=2)
            concurrency = sorted(
                {level["concurrency"] for host in hosts.values() for level in host["levels"]}
            )
            ax.set_xticks(concurrency)
            ax.set_xticklabels([str(c) for c in concurrency])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("concurrent requests (connections)")
            ax.set_ylabel("issuances/s")
            pinning = (http.get("parameters") or {}).get("pinning")
            where = "server and client on separate CPUs" if pinning else "unpinned"
            ax.set_title(f"Throughput per host ({where})", fontsize=10)
        elif panel == "scaling":
            rows = scaling["workers"]
            workers = [row["workers"] for row in rows]
            rates = [(row.get("best") or {}).get("issuances_per_s", 0.0) for row in rows]
            ax.bar(workers, rates, color="tab:orange", alpha=0.8, label="raw host")
            for w, rate in zip(workers, rates, strict=True):
                ax.annotate(f"{rate:.0f}", (w, rate), ha="center", va="bottom", fontsize=8)
            if rates and workers[0] == 1 and rates[0]:
                ax.plot(
                    workers,
                    [rates[0] * w for w in workers],
                    linestyle=":",
                    color="grey",
                    label="perfect scaling",
                )
            ax.set_ylim(bottom=0)
            ax.set_xticks(workers)
            ax.set_xlabel("worker processes (--workers)")
            ax.set_ylabel("issuances/s")
            concurrency = (scaling.get("parameters") or {}).get("concurrency") or ["?"]
            ax.set_title(
                f"Raw host scaling, {concurrency[0]} connections, load generator on the same CPUs",
                fontsize=9,
            )
        elif panel == "acme":
            for label, server in acme.items():
                levels = [level for level in server["levels"] if level["ok"]]
                if not levels:
                    continue
                ax.errorbar(
                    [level["concurrency"] for level in levels],
                    [level["orders_per_s"] for level in levels],
                    yerr=_errors(levels, "orders_per_s"),
                    marker="o",
                    capsize=3,
                    label=label,
                    color=COLOURS.get(label),
                )
            concurrency = sorted(
                {level["concurrency"] for server in acme.values() for level in server["levels"]}
            )
            ax.set_xscale("log", base=2)
            ax.set_xticks(concurrency)
            ax.set_xticklabels([str(c) for c in concurrency])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("concurrent orders (connections)")
            ax.set_ylabel("complete orders/s")
            ax.set_title("ACME http-01 orders: devid vs pebble", fontsize=10)
        else:
            points = soak["checkpoints"]
            ax.plot(
                [p["issued"] for p in points],
                [(p["rss_kib"] or 0) / 1024 for p in points],
                marker=".",
                color="tab:green",
                label="server VmRSS",
            )
            ax.set_xlabel("certificates issued (after the warm-up)")
            ax.set_ylabel("MiB")
            ax.set_ylim(bottom=0)
            ax.set_title("Server RSS across the soak (raw host)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m benchmarks.report.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    reason = missing()
    if reason:
        print(f"benchmarks.report.plot: {reason}", file=sys.stderr)
        return 1
    results = json.loads(Path(args[0]).read_text())
    print(write_plot(results, Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
