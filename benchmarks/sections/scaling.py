"""Worker processes: ``devid serve --host raw --workers N`` for each N, at one concurrency.

The servers (:mod:`benchmarks.servers`) and the rounds (:mod:`benchmarks.rounds`)
are the http section's; here every worker count is a server of its own, all
started first, the rounds interleaved across them, the load generator not
pinned (the workers need every CPU, which it shares with them).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import Progress, rounded
from ..procs import usable_cpus
from ..rounds import LoadParams, run_targets, with_ratios
from ..servers import ServerSpec
from . import RunContext, parse_levels, parse_positive
from .inprocess import reference_rate

NAME = "scaling"
SIZE_OPTIONS = ("workers", "scaling_requests")

SUMMARY = """\
  scaling      `devid serve --host raw --workers N` for N = 1 .. max(2, CPUs), each worker
               on a CPU of its own (the single one too), the client unpinned, at one
               concurrency level (--scaling-concurrency).
"""
FIGURES = """\
  scaling (one row per worker count)
    issuances/s, ÷ 1 worker
                 as in http, for `--workers N`; ÷ 1 worker is the scaling ratio (the
                 issue's target: 2 workers >= 1.8 x 1 worker where cores allow).
    server cores, client cores
                 CPU seconds per second of the server (all workers) and of the load
                 generator; on 2 CPUs they compete, so read them before the ratio.
    worker CPU shares
                 how the server CPU split over the worker processes (1.00 / 0.00 would
                 mean one worker took every connection).
    peak RSS     the sum of the workers' VmHWM (the supervisor's own is in the JSON).
"""


@dataclass(frozen=True)
class ScalingParams(LoadParams):
    """The scaling section: the raw host with each worker count, at one concurrency level."""

    concurrency: tuple[int, ...] = (32,)
    requests: tuple[int, ...] = (800,)
    workers: tuple[int, ...] = (1, 2)
    host: str = "raw"

    def describe(self) -> dict[str, Any]:
        return {"host": self.host, "workers": list(self.workers), **super().describe()}


def run_scaling(
    params: ScalingParams,
    work_dir: Path,
    progress: Progress,
    *,
    inprocess_reference_per_s: float | None,
) -> dict[str, Any]:
    """The raw host with each worker count, interleaved, at one concurrency.

    With several workers each keeps to a CPU of its own (devid's default worker
    affinity); the single worker is kept to one CPU too, so that every configuration
    runs each worker alike (an unpinned lone worker migrates between CPUs and spends
    more CPU per request, which would flatter the ratio). The load generator is not
    pinned: it takes its share from the workers' CPUs, as it would on a real host.
    """
    first_cpu = usable_cpus()[:1]
    specs = [
        ServerSpec(
            f"{params.host} workers={w}",
            host=params.host,
            workers=w,
            cpus=tuple(first_cpu) if w == 1 and len(usable_cpus()) > 1 else None,
        )
        for w in params.workers
    ]
    results = run_targets(specs, params, work_dir / "scaling", progress, "scaling", None)
    rows = []
    for result in results:
        with_ratios(result, inprocess_reference_per_s)
        rows.append(result)
    by_workers = {r["workers"]: r for r in rows}
    ratios: dict[str, Any] = {}
    base = by_workers.get(1, {}).get("best")
    if base and base["issuances_per_s"]:
        for workers, row in by_workers.items():
            best = row.get("best")
            if workers != 1 and best:
                ratios[f"{workers}_over_1"] = rounded(
                    float(best["issuances_per_s"]) / float(base["issuances_per_s"]), 3
                )
    return {
        "parameters": params.describe(),
        "cpus_usable": len(usable_cpus()),
        "inprocess_reference": {"issuances_per_s": inprocess_reference_per_s},
        "workers": rows,
        "ratios": ratios,
    }


def default_workers() -> tuple[int, ...]:
    """1 .. max(2, usable CPUs): the scaling section's worker counts."""
    return tuple(range(1, max(2, len(usable_cpus())) + 1))


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scaling")
    group.add_argument(
        "--workers",
        type=parse_levels,
        metavar="LIST",
        help="scaling: worker counts, comma-separated (default 1..max(2, usable CPUs))",
    )
    group.add_argument(
        "--scaling-concurrency",
        type=parse_positive,
        default=32,
        metavar="N",
        help="scaling: connections (concurrent requests) for every worker count (default 32)",
    )
    group.add_argument(
        "--scaling-requests",
        type=parse_positive,
        metavar="N",
        help="scaling: timed requests per worker count and round (default 800; quick 150)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    params = ScalingParams(
        concurrency=(options.scaling_concurrency,),
        requests=(context.size("scaling_requests", "scaling_requests"),),
        rounds=context.size("rounds", "rounds"),
        workers=tuple(options.workers or default_workers()),
        client_key_type=options.client_key_type,
    )
    reference, _ = reference_rate(context)
    return run_scaling(
        params, context.work_dir, context.progress, inprocess_reference_per_s=reference
    )
