"""The signing path through a host: ``devid serve`` in a subprocess, loaded over HTTPS.

Each server runs as its own process (``devid serve --listen 127.0.0.1:0
--host quart|raw [--workers N]``) on a fresh P-256 CA of its own with the
default store (SQLite, WAL, ``synchronous=full``); the load generator is this
process (:mod:`benchmarks.loadgen`: h11 over trio's TLS streams, HTTP/1.1
keep-alive, verifying the server against the CA's root). Each round at a
concurrency level opens exactly that many connections (TLS handshakes are not
in the timed region) and warms them up before the timed requests. Every request carries a
fresh CSR and a one-time token minted just before its round.

This section, ``http``, loads each host (quart, raw) at concurrency 1, 8, 32.
All the servers are started first and the rounds interleave hosts and levels
(round 1 of every host and level, then round 2, ...), so drift on a busy
machine hits every figure alike. On a machine with at least two usable CPUs
the servers are pinned to the first and the load generator to the second
(``--no-pin`` turns this off), which is the set-up the issue's targets name.
The ``scaling`` section (:mod:`benchmarks.sections.scaling`) uses the same
machinery: the servers (:mod:`benchmarks.servers`) and the rounds
(:mod:`benchmarks.rounds`).

All traffic goes to 127.0.0.1. Every round is bounded by a request count and a
deadline, and every server is always terminated (then killed if it lingers,
its workers too).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import Progress, rounded
from ..rounds import LoadParams, run_targets, with_ratios
from ..servers import Pinning, ServerSpec
from . import (
    RunContext,
    add_count_option,
    add_hosts_option,
    add_levels_option,
    requests_for,
)
from .inprocess import reference_rate

NAME = "http"
HOSTS = ("quart", "raw")
DEFAULT_CONCURRENCY = (1, 8, 32)
SIZE_OPTIONS = ("concurrency", "requests")

SUMMARY = """\
  http         `devid serve --host quart` and `--host raw` as subprocesses on 127.0.0.1
               (P-256 CA, default store), loaded by a trio + h11 client at concurrency
               1, 8 and 32; hosts and levels interleaved round by round; servers pinned
               to one CPU and the client to another when there are two (--no-pin).
"""
FIGURES = """\
  http (one row per host and concurrency level)
    issuances/s  201 responses with a certificate per second over the timed requests,
                 with at most `concurrency` requests in flight on as many keep-alive
                 connections (TLS handshakes happen in the untimed warm-up); median of
                 the rounds, which are interleaved across hosts and levels.
    p50 ms, p99 ms, p99÷p50
                 client-side latency of POST /1.0/sign (request sent to body read),
                 all rounds pooled; p99÷p50 is the tail (the issue's target: <= 4 at 32).
    server CPU ms/iss, client CPU ms/iss
                 CPU time (user + system) per issuance of the server process (from
                 /proc/PID/stat; summed over worker processes) and of this load-generator
                 process.
    server cores CPU seconds of the server per wall-clock second: near 1.0 means the
                 server is bound by one core (the GIL); server cores + client cores
                 (both in the JSON) near the CPU count means the machine, not the
                 server, is the limit.
    host÷in-process
                 host issuances/s ÷ the in-process P-256 sync=full rate of the same run:
                 what the HTTP stack, TLS, JSON and the thread hand-off cost. The
                 headline uses each host's best level.
    server peak RSS
                 VmHWM of the server process (/proc/PID/status) at the end of the run;
                 idle = VmRSS once /health first answered.
"""


@dataclass(frozen=True)
class HttpParams(LoadParams):
    """The http section: every host in ``hosts`` at every concurrency level."""

    hosts: tuple[str, ...] = HOSTS
    #: Pin the servers to one CPU and the load generator to another (needs two CPUs).
    pin: bool = True

    def describe(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), **super().describe()}


def run_http(
    params: HttpParams,
    work_dir: Path,
    progress: Progress,
    *,
    inprocess_reference_per_s: float | None,
    reference_source: str,
) -> dict[str, Any]:
    """Every host at every concurrency level, one single-process server per host."""
    pinning = Pinning.choose(params.pin)
    specs = [ServerSpec(host, host=host, cpus=pinning.server) for host in params.hosts]
    results = run_targets(specs, params, work_dir / "http", progress, "http", pinning.client)
    hosts = {r["label"]: with_ratios(r, inprocess_reference_per_s) for r in results}
    ratios: dict[str, Any] = {}
    if "quart" in hosts and "raw" in hosts:
        quart, raw = hosts["quart"].get("best"), hosts["raw"].get("best")
        if quart and raw and quart["issuances_per_s"]:
            ratios["raw_over_quart"] = rounded(
                float(raw["issuances_per_s"]) / float(quart["issuances_per_s"]), 3
            )
    return {
        "parameters": {**params.describe(), "pinning": pinning.describe()},
        "inprocess_reference": {
            "issuances_per_s": inprocess_reference_per_s,
            "source": reference_source,
        },
        "hosts": hosts,
        "ratios": ratios,
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("http")
    add_levels_option(
        group,
        "--concurrency",
        DEFAULT_CONCURRENCY,
        "http concurrency levels, comma-separated (default 1,8,32)",
    )
    add_count_option(
        group,
        "--requests",
        "timed http requests per level and round"
        " (default 200/600/800 for 1/8/32; quick 40/100/150)",
    )
    add_hosts_option(
        group,
        "--host",
        HOSTS,
        "a host the http section starts, `devid serve --host NAME` (repeatable;"
        " default quart and raw)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    params = HttpParams(
        concurrency=tuple(options.concurrency),
        requests=tuple(
            requests_for(context.sizes["requests"], options.concurrency, options.requests)
        ),
        rounds=context.size("rounds", "rounds"),
        hosts=tuple(dict.fromkeys(options.host or HOSTS)),
        client_key_type=options.client_key_type,
        pin=not options.no_pin,
    )
    reference, source = reference_rate(context)
    return run_http(
        params,
        context.work_dir,
        context.progress,
        inprocess_reference_per_s=reference,
        reference_source=source,
    )
