"""RSS across many issuances: is the server's memory flat?

One ``devid serve`` (the raw host, one worker, pinned like the http section)
issues N certificates at a fixed concurrency, in chunks of ``every``. After a
warm-up (the start point: imports done, caches filled, connections made) and
after every chunk, the server's VmRSS and VmHWM are read from /proc. Each chunk
uses a new client with new connections, so per-connection state that leaks
shows up too. Requests for a chunk are prepared while the server is idle
(fresh CSRs, tokens minted just before the chunk), so every token is fresh and
the client's own memory stays flat.

The figures: RSS at start, middle and end; growth start -> end; and growth over
the second half (middle -> end), the better leak signal, since a store or a
cache that fills once shows up in the first half only. It is also given per
10,000 issuances, so runs of different lengths compare.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from engine.keys import KeyType

from ..common import SIGN_PATH, BenchmarkError, Progress, make_client_requests, rounded
from ..loadgen import drive
from ..servers import Pinning, ServerSpec, Target, client_affinity, start_targets, stop_all
from . import RunContext, parse_positive

NAME = "soak"
SIZE_OPTIONS = ("soak", "soak_every")

SUMMARY = """\
  soak         N issuances (--soak; 100,000 in a full run) through the raw host with the
               server's RSS read every --soak-every issuances.
"""
FIGURES = """\
  soak (one row per reading)
    RSS MiB, since start, HWM MiB
                 the server's VmRSS after the warm-up (start) and every --soak-every
                 issuances, its change since the start, and VmHWM.
    growth       end - start, end ÷ start, and the second half (middle -> end) per
                 10,000 issuances: the leak signal (stores and caches fill early).
    chunk issuances/s, store MiB
                 the rate of each chunk (new connections each) and the SQLite files'
                 size, which grows with every certificate kept.
"""


@dataclass(frozen=True)
class SoakParams:
    issuances: int = 20_000
    #: A memory reading every this many issuances.
    every: int = 2_000
    concurrency: int = 8
    host: str = "raw"
    workers: int = 1
    pin: bool = True
    #: Untimed issuances before the start reading.
    warmup: int = 200
    client_key_type: KeyType = KeyType.P256
    #: Bound on one chunk, and on the whole soak (None: 60 s + 20 ms per issuance).
    chunk_timeout_s: float = 300.0
    max_duration_s: float | None = None
    startup_timeout_s: float = 60.0
    max_errors: int = 20

    def __post_init__(self) -> None:
        if min(self.issuances, self.every, self.concurrency, self.workers) < 1:
            raise ValueError("soak sizes must be positive")

    @property
    def deadline_s(self) -> float:
        if self.max_duration_s is not None:
            return self.max_duration_s
        return 60.0 + 0.02 * (self.issuances + self.warmup)

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "workers": self.workers,
            "issuances": self.issuances,
            "reading_every": self.every,
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "client_key_type": self.client_key_type.value,
            "deadline_s": self.deadline_s,
            "connections": "a new client (new TLS connections) for every chunk",
        }


def _db_bytes(data_dir: Path) -> int:
    total = 0
    for path in data_dir.rglob("*.sqlite*"):
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


async def _soak(
    params: SoakParams, target: Target, data_dir: Path, progress: Progress
) -> dict[str, Any]:
    started = time.perf_counter()
    checkpoints: list[dict[str, Any]] = []
    errors: list[str] = []
    issued = 0
    stopped_early: str | None = None

    async def chunk(count: int, prefix: str, warmup: bool = False) -> tuple[int, float]:
        requests = make_client_requests(count, params.client_key_type, prefix=prefix)
        bodies = target.bodies(requests)

        def status(done: int) -> None:
            if warmup:
                progress.status(f"soak warm-up: {done}/{count}")
            else:
                progress.status(f"soak: {issued + done}/{params.issuances}")

        async with target.pool(min(params.concurrency, count)) as pool:
            outcome = await drive(
                pool,
                SIGN_PATH,
                bodies,
                params.chunk_timeout_s,
                params.max_errors - len(errors),
                status if progress.live else None,
            )
        errors.extend(outcome.errors)
        if target.server.process.poll() is not None:
            raise BenchmarkError(
                f"soak: the server exited with status {target.server.process.returncode}"
            )
        return len(outcome.latencies), outcome.elapsed

    def reading(chunk_rate: float | None) -> dict[str, Any]:
        memory = target.server.memory()
        point = {
            "issued": issued,
            "rss_kib": memory.total("VmRSS"),
            "hwm_kib": memory.total("VmHWM"),
            "elapsed_s": rounded(time.perf_counter() - started, 1),
            "chunk_issuances_per_s": rounded(chunk_rate, 1) if chunk_rate is not None else None,
            "db_bytes": _db_bytes(data_dir),
        }
        checkpoints.append(point)
        return point

    ok, _ = await chunk(params.warmup, "soak-warm", warmup=True)
    if ok < params.warmup:
        raise BenchmarkError(f"soak: the warm-up failed: {errors[0] if errors else 'timeout'}")
    first = reading(None)
    progress(f"soak: start after {params.warmup} warm-up issuances, RSS {_mib(first['rss_kib'])}")
    index = 0
    while issued < params.issuances:
        if errors and len(errors) >= params.max_errors:
            stopped_early = f"{len(errors)} errors, first: {errors[0]}"
            break
        if time.perf_counter() - started > params.deadline_s:
            stopped_early = f"deadline of {params.deadline_s:.0f} s reached"
            break
        count = min(params.every, params.issuances - issued)
        index += 1
        ok, elapsed = await chunk(count, f"soak{index}")
        issued += ok
        point = reading(ok / elapsed if elapsed else None)
        growth = (point["rss_kib"] or 0) - (first["rss_kib"] or 0)
        progress(
            f"soak {issued}/{params.issuances}: {point['chunk_issuances_per_s']}/s,"
            f" RSS {_mib(point['rss_kib'])} ({growth / 1024:+.1f} MiB since start)"
        )
        if ok < count and not errors:
            stopped_early = "a chunk reached its deadline"
            break
    return {
        "checkpoints": checkpoints,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "stopped_early": stopped_early,
        "duration_s": rounded(time.perf_counter() - started, 1),
    }


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.1f} MiB" if isinstance(kib, int | float) else "-"


def summarise(params: SoakParams, run: dict[str, Any]) -> dict[str, Any]:
    points = run["checkpoints"]
    start, end = points[0], points[-1]
    issued = int(end["issued"])
    middle = min(points, key=lambda p: abs(int(p["issued"]) - issued / 2))
    timed = [p for p in points[1:] if p["chunk_issuances_per_s"]]
    out: dict[str, Any] = {
        "parameters": params.describe(),
        "issued": issued,
        "completed": issued >= params.issuances and run["stopped_early"] is None,
        **run,
        "start": {"issued": start["issued"], "rss_kib": start["rss_kib"]},
        "middle": {"issued": middle["issued"], "rss_kib": middle["rss_kib"]},
        "end": {"issued": end["issued"], "rss_kib": end["rss_kib"]},
        "peak_rss_kib": max((p["hwm_kib"] or 0) for p in points),
    }
    if timed:
        rates = [float(p["chunk_issuances_per_s"]) for p in timed]
        out["issuances_per_s_median_chunk"] = rounded(sorted(rates)[len(rates) // 2], 1)
    if start["rss_kib"] and end["rss_kib"]:
        growth = end["rss_kib"] - start["rss_kib"]
        out["growth_kib"] = growth
        out["growth_ratio"] = rounded(end["rss_kib"] / start["rss_kib"], 4)
        second = end["rss_kib"] - middle["rss_kib"]
        span = issued - int(middle["issued"])
        out["second_half_growth_kib"] = second
        out["second_half_growth_kib_per_10k"] = rounded(second / span * 10_000, 1) if span else None
    return out


def run_soak(params: SoakParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    pinning = Pinning.choose(params.pin and params.workers == 1)
    spec = ServerSpec(params.host, host=params.host, workers=params.workers, cpus=pinning.server)
    started: list[Any] = []
    base = work_dir / "soak"
    try:
        (target,) = start_targets([spec], base, progress, "soak", params.startup_timeout_s, started)
        with client_affinity(pinning.client):
            run = trio.run(_soak, params, target, target.server.data_dir, progress)
    finally:
        statuses = stop_all(started, progress, "soak")
    result = summarise(params, run)
    result["pinning"] = pinning.describe()
    result["server"] = {
        "pid": target.server.pid,
        "command": target.server.command,
        "exit_status": statuses.get(target.server.pid),
    }
    return result


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("soak")
    group.add_argument(
        "--soak",
        type=parse_positive,
        metavar="N",
        help="soak: issuances through the raw host (default 100000, about 3 minutes on 2"
        " cores; quick 1000)",
    )
    group.add_argument(
        "--soak-every",
        type=parse_positive,
        metavar="N",
        help="soak: read the server's RSS every N issuances (default 10000; quick 250)",
    )
    group.add_argument(
        "--soak-concurrency",
        type=parse_positive,
        default=8,
        metavar="N",
        help="soak: concurrent requests (default 8)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    issuances = context.size("soak", "soak")
    params = SoakParams(
        issuances=issuances,
        warmup=min(200, issuances),
        every=context.size("soak_every", "soak_every"),
        concurrency=options.soak_concurrency,
        pin=not options.no_pin,
        client_key_type=options.client_key_type,
    )
    return run_soak(params, context.work_dir, context.progress)
