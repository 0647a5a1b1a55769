"""The shared round logic: timed rounds of operations against a server, and their figures.

A *round* does N operations against one server at one concurrency level (N
signing requests, N ACME orders, ...). :class:`Meter` measures what a round
cost: its wall time, the CPU seconds (user + system) of the server's whole
process tree read from ``/proc/PID/stat`` (a supervisor and its workers, see
:mod:`benchmarks.procs`), the CPU of other measured processes (a DNS server),
and, kept apart, the CPU of this process: the load generator's work is never
counted as the server's. :func:`schedule` orders rounds so that servers and
levels interleave (round 1 of every server and level, then round 2, ...): drift
on a busy machine then hits every figure alike, and the median round is the
headline (:func:`benchmarks.common.spread`).

The signing load of the ``http`` and ``scaling`` sections is built here:
:class:`LoadParams`, :func:`one_round` (warm up the connections untimed, then
time the requests through :func:`benchmarks.loadgen.drive`),
:func:`run_targets` (start every server, run the interleaved rounds, stop
them, summarise each level with :func:`summarise_level`) and
:func:`with_ratios` (each level against the in-process rate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from engine.keys import KeyType

from .common import (
    SIGN_PATH,
    BenchmarkError,
    ClientRequest,
    Progress,
    make_client_requests,
    median,
    percentile,
    rounded,
    spread,
)
from .loadgen import LevelOutcome, Pool, drive
from .procs import proc_cpu_seconds
from .servers import ServerProcess, ServerSpec, Target, client_affinity, start_targets, stop_all

T = TypeVar("T")
L = TypeVar("L")


# --- what a round costs ------------------------------------------------------------------------


class Measured(Protocol):
    """A server whose CPU a :class:`Meter` reads (per process of its tree)."""

    def cpu_snapshot(self) -> dict[int, float]: ...


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds used per pid between two snapshots (a pid new in *after* counts whole)."""
    return {pid: after[pid] - before.get(pid, 0.0) for pid in after}


@dataclass(frozen=True)
class Usage:
    """What one timed region cost."""

    elapsed: float
    #: CPU seconds per server process; empty when /proc could not be read.
    server_cpu_by_pid: dict[int, float]
    #: This process's CPU seconds: the load generator (and whatever else runs in it).
    client_cpu_s: float
    #: CPU seconds of each other measured process (None: not readable).
    others_cpu_s: dict[str, float | None] = field(default_factory=dict)

    @property
    def server_cpu_s(self) -> float | None:
        return sum(self.server_cpu_by_pid.values()) if self.server_cpu_by_pid else None


class Meter:
    """Wall time, the server's CPU, other processes' CPU and this process's CPU over
    one timed region: :meth:`start` just before the first timed operation,
    :meth:`stop` just after the last."""

    def __init__(self, server: Measured, others: Mapping[str, int] | None = None) -> None:
        self.server = server
        self.others = dict(others or {})
        self._server: dict[int, float] = {}
        self._others: dict[str, float | None] = {}
        self._client = 0.0
        self._wall = 0.0

    def start(self) -> None:
        self._server = self.server.cpu_snapshot()
        self._others = {name: proc_cpu_seconds(pid) for name, pid in self.others.items()}
        self._client = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> Usage:
        elapsed = time.perf_counter() - self._wall
        client = time.process_time() - self._client
        after = self.server.cpu_snapshot()
        others: dict[str, float | None] = {}
        for name, pid in self.others.items():
            before, now = self._others.get(name), proc_cpu_seconds(pid)
            others[name] = now - before if now is not None and before is not None else None
        by_pid = cpu_delta(self._server, after) if self._server and after else {}
        return Usage(elapsed, by_pid, client, others)


def schedule(rounds: int, targets: Sequence[T], levels: Sequence[L]) -> Iterator[tuple[int, T, L]]:
    """(round number, target, level): round 1 of every target and level, then round 2, ..."""
    for round_number in range(1, rounds + 1):
        for target in targets:
            for level in levels:
                yield round_number, target, level


def latency_figures(latencies: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of *latencies* (seconds), in ms."""
    return {
        "p50": rounded(percentile(latencies, 0.50) * 1e3),
        "p90": rounded(percentile(latencies, 0.90) * 1e3),
        "p99": rounded(percentile(latencies, 0.99) * 1e3),
        "max": rounded(max(latencies) * 1e3),
        "mean": rounded(sum(latencies) / len(latencies) * 1e3),
    }


# --- the signing load (http, scaling) ------------------------------------------------------------


def check_levels(concurrency: Sequence[int], requests: Sequence[int], rounds: int) -> None:
    """A load plan's levels: one timed request count per concurrency level, all positive."""
    if len(requests) != len(concurrency):
        raise ValueError("one request count per concurrency level")
    if rounds < 1 or any(c < 1 for c in (*concurrency, *requests)):
        raise ValueError("concurrency levels and request counts must be positive")


def requests_in_run(
    concurrency: Sequence[int],
    requests: Sequence[int],
    rounds: int,
    warmup_for: Callable[[int], int],
) -> int:
    """Every request a load plan sends to one target over the run, warm-ups included."""
    plan = zip(concurrency, requests, strict=True)
    return rounds * sum(warmup_for(c) + r for c, r in plan)


@dataclass(frozen=True)
class LoadParams:
    """How hard and how long to load each server."""

    concurrency: tuple[int, ...] = (1, 8, 32)
    #: Timed requests per level and round, in the order of ``concurrency``.
    requests: tuple[int, ...] = (200, 600, 800)
    #: Rounds per level, interleaved across servers and levels; the median round is the headline.
    rounds: int = 3
    #: Untimed requests per level before the timed ones; None: max(8, 2 x concurrency).
    warmup: int | None = None
    level_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    client_key_type: KeyType = KeyType.P256
    #: A round stops early after this many failed requests.
    max_errors: int = 20

    def __post_init__(self) -> None:
        check_levels(self.concurrency, self.requests, self.rounds)

    def warmup_for(self, concurrency: int) -> int:
        return self.warmup if self.warmup is not None else max(8, 2 * concurrency)

    def requests_per_server(self) -> int:
        return requests_in_run(self.concurrency, self.requests, self.rounds, self.warmup_for)

    def describe(self) -> dict[str, Any]:
        return {
            "issuer_key_type": KeyType.P256.value,
            "client_key_type": self.client_key_type.value,
            "concurrency": list(self.concurrency),
            "requests_per_round": list(self.requests),
            "rounds": self.rounds,
            "warmup": [self.warmup_for(c) for c in self.concurrency],
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS (h11 on trio SSL streams, one"
            " connection per concurrent request)",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


@dataclass
class RoundSample:
    """One timed round at one concurrency level on one server."""

    outcome: LevelOutcome
    server_cpu_s: float | None
    client_cpu_s: float
    #: CPU seconds per server process (pid) in the round: how the workers shared the load.
    server_cpu_by_pid: dict[int, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.outcome.latencies) / self.outcome.elapsed if self.outcome.elapsed else 0.0


async def one_round(
    params: LoadParams,
    target: Target,
    concurrency: int,
    bodies: Sequence[bytes],
    label: str,
    progress: Progress,
) -> RoundSample:
    """Warm up *concurrency* connections, then time the rest of *bodies* through them."""
    warmup = params.warmup_for(concurrency)
    server = target.server
    timed = len(bodies) - warmup

    def status(done: int) -> None:
        progress.status(f"{label}: {done}/{timed}")

    async with target.pool(concurrency) as pool:
        return await timed_level(
            pool,
            server,
            SIGN_PATH,
            bodies,
            warmup,
            (params.level_timeout_s, params.max_errors),
            label,
            progress,
            status if progress.live else None,
        )


async def timed_level(
    pool: Pool,
    server: ServerProcess,
    path: str,
    bodies: Sequence[bytes],
    warmup: int,
    limits: tuple[float, int],
    label: str,
    progress: Progress,
    status: Callable[[int], None] | None = None,
) -> RoundSample:
    """Warm *pool*'s connections up with the first *warmup* bodies, then time the rest
    of them to *path* with the server's CPU read around it; *limits* is the level's
    timeout and how many errors end it early."""
    timeout, max_errors = limits
    warm = await drive(pool, path, bodies[:warmup], timeout, 1)
    if warm.errors:
        raise BenchmarkError(f"{label}: a warm-up request failed: {warm.errors[0]}")
    meter = Meter(server)
    meter.start()
    outcome = await drive(pool, path, bodies[warmup:], timeout, max_errors, status)
    usage = meter.stop()
    if server.process.poll() is not None:
        raise BenchmarkError(f"{label}: the server exited with status {server.process.returncode}")
    sample = RoundSample(
        outcome=outcome,
        server_cpu_s=usage.server_cpu_s,
        client_cpu_s=usage.client_cpu_s,
        server_cpu_by_pid=usage.server_cpu_by_pid,
    )
    errors = outcome.errors
    progress(
        f"{label}: {sample.rate:7.1f}/s"
        + (f"  {len(errors)} errors, first: {errors[0]}" if errors else "")
        + ("  (deadline reached)" if outcome.timed_out else "")
    )
    return sample


class _Sampled(Protocol):
    """What a round's sample has in every section that loads a server in rounds."""

    @property
    def outcome(self) -> LevelOutcome: ...

    @property
    def rate(self) -> float: ...

    @property
    def server_cpu_s(self) -> float | None: ...

    @property
    def client_cpu_s(self) -> float: ...


def level_figures(
    concurrency: int, per_round: int, samples: Sequence[_Sampled], rate_key: str
) -> tuple[dict[str, Any], list[float], float]:
    """The figures every level reports (requests, errors, the median rate under
    *rate_key*, its spread), with the level's latencies and elapsed seconds."""
    latencies = [x for s in samples for x in s.outcome.latencies]
    errors = [e for s in samples for e in s.outcome.errors]
    elapsed = sum(s.outcome.elapsed for s in samples)
    ok = len(latencies)
    rates = [s.rate for s in samples]
    level: dict[str, Any] = {
        "concurrency": concurrency,
        "rounds": len(samples),
        "requests": per_round * len(samples),
        "ok": ok,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "timed_out": any(s.outcome.timed_out for s in samples),
        "elapsed_s": rounded(elapsed),
        rate_key: rounded(median(rates), 1) if ok else 0.0,
        "per_round": spread(rates),
    }
    return level, latencies, elapsed


def server_cpu_used(samples: Sequence[_Sampled]) -> float | None:
    """The server's CPU seconds over *samples*, if every round could read it."""
    server_cpu = [s.server_cpu_s for s in samples]
    if not all(c is not None for c in server_cpu):
        return None
    return sum(c for c in server_cpu if c is not None)


def summarise_level(
    concurrency: int, per_round: int, samples: Sequence[RoundSample], root_pid: int
) -> dict[str, Any]:
    level, latencies, elapsed = level_figures(concurrency, per_round, samples, "issuances_per_s")
    ok = len(latencies)
    if ok:
        lat = latency_figures(latencies)
        level["latency_ms"] = lat
        level["p99_over_p50"] = rounded(lat["p99"] / lat["p50"], 3) if lat["p50"] else None
        # Per round, to tell one stall of the server (every request in flight held up:
        # one round's p99 and its longest stall far above the others) from a spread tail.
        level["p99_ms_per_round"] = [
            rounded(percentile(s.outcome.latencies, 0.99) * 1e3) if s.outcome.latencies else None
            for s in samples
        ]
        level["longest_stall_ms_per_round"] = [
            rounded(s.outcome.longest_stall() * 1e3) for s in samples
        ]
        used = server_cpu_used(samples)
        if used is not None:
            level["server_cpu_ms_per_issuance"] = rounded(used / ok * 1e3)
            level["server_cpu_cores"] = rounded(used / elapsed)
        client_cpu = sum(s.client_cpu_s for s in samples)
        level["client_cpu_ms_per_issuance"] = rounded(client_cpu / ok * 1e3)
        level["client_cpu_cores"] = rounded(client_cpu / elapsed)
        # How the work spread over the worker processes (the supervisor left out).
        by_pid: dict[int, float] = {}
        for s in samples:
            for pid, seconds in s.server_cpu_by_pid.items():
                if pid != root_pid or len(s.server_cpu_by_pid) == 1:
                    by_pid[pid] = by_pid.get(pid, 0.0) + seconds
        total = sum(by_pid.values())
        if len(by_pid) > 1 and total > 0:
            level["worker_cpu_shares"] = sorted(
                (rounded(v / total, 3) for v in by_pid.values()), reverse=True
            )
    return level


async def interleaved(
    params: LoadParams,
    targets: Sequence[Target],
    requests: Sequence[ClientRequest],
    progress: Progress,
    section: str,
) -> dict[str, dict[int, list[RoundSample]]]:
    """Rounds x servers x levels, interleaved (round 1 of every server and level, then 2...)."""
    samples: dict[str, dict[int, list[RoundSample]]] = {
        t.spec.label: {c: [] for c in params.concurrency} for t in targets
    }
    offset = 0
    levels = list(zip(params.concurrency, params.requests, strict=True))
    for round_number, target, (concurrency, count) in schedule(params.rounds, targets, levels):
        chunk = requests[offset : offset + params.warmup_for(concurrency) + count]
        offset += len(chunk)
        label = (
            f"{section} {target.spec.label} c={concurrency} round {round_number}/{params.rounds}"
        )
        sample = await one_round(params, target, concurrency, target.bodies(chunk), label, progress)
        samples[target.spec.label][concurrency].append(sample)
    return samples


def run_targets(
    specs: Sequence[ServerSpec],
    params: LoadParams,
    work_dir: Path,
    progress: Progress,
    section: str,
    client_cpus: tuple[int, ...] | None,
) -> list[dict[str, Any]]:
    """Start every server, load them interleaved, stop them; one result per server."""
    total = params.requests_per_server() * len(specs)
    progress(f"{section}: preparing {total} {params.client_key_type.value} client keys and CSRs")
    requests = make_client_requests(total, params.client_key_type, prefix=section)
    started: list[ServerProcess] = []
    statuses: dict[int, Any] = {}
    try:
        targets = start_targets(
            specs, work_dir, progress, section, params.startup_timeout_s, started
        )
        with client_affinity(client_cpus):
            samples = trio.run(interleaved, params, targets, requests, progress, section)
        peaks = {t.spec.label: t.server.memory() for t in targets}
    finally:
        statuses = stop_all(started, progress, section)
    out: list[dict[str, Any]] = []
    for target in targets:
        label = target.spec.label
        peak = peaks[label]
        levels = [
            summarise_level(c, r, samples[label][c], target.server.pid)
            for c, r in zip(params.concurrency, params.requests, strict=True)
        ]
        out.append(
            {
                **target.spec.describe(),
                "server": {
                    "command": target.server.command,
                    "pid": target.server.pid,
                    "startup_s": rounded(target.startup_s),
                    "processes": len(peak.per_process),
                    "pids": sorted(peak.per_process),
                    "idle_rss_kib": target.idle_memory.total("VmRSS"),
                    # The headline: one process's VmHWM, or the sum over the workers.
                    "peak_rss_kib": (
                        peak.workers("VmHWM") if target.spec.workers > 1 else peak.total("VmHWM")
                    ),
                    "supervisor_peak_rss_kib": (
                        peak.of(target.server.pid, "VmHWM") if target.spec.workers > 1 else None
                    ),
                    "tree_peak_rss_kib": peak.total("VmHWM"),
                    "exit_status": statuses.get(target.server.pid),
                },
                "levels": levels,
            }
        )
    return out


def with_ratios(result: dict[str, Any], reference: float | None) -> dict[str, Any]:
    """Each level's rate ÷ the in-process *reference*, and the best level, added to *result*."""
    for level in result["levels"]:
        rate = float(level["issuances_per_s"])
        level["ratio_to_inprocess"] = rounded(rate / reference, 3) if reference else None
    ok = [level for level in result["levels"] if level["ok"]]
    if ok:
        best = max(ok, key=lambda level: float(level["issuances_per_s"]))
        result["best"] = {
            "concurrency": best["concurrency"],
            "issuances_per_s": best["issuances_per_s"],
            "ratio_to_inprocess": best["ratio_to_inprocess"],
        }
    return result
