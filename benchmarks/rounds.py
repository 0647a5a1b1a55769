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

The sections that time kinds of request (accounts, scep, oidc) share
:class:`KindPlan` (their parameters' base), :func:`serve_hosts` (start each
host, measure, always stop), :func:`kind_rounds` (rounds interleaving hosts,
kinds and levels) and the figures: :func:`summarise_per_item`,
:func:`kind_figures`, :func:`inprocess_figures`, :func:`crypto_split`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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
    write_password_file,
)
from .loadgen import LevelOutcome, Pool, accepted, drive
from .procs import proc_cpu_seconds
from .servers import (
    Pinning,
    ServerProcess,
    ServerSpec,
    Target,
    client_affinity,
    start_targets,
    stop_all,
)

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
    *,
    content_type: str = "application/json",
    ok: Callable[[int, bytes], bool] = accepted,
) -> RoundSample:
    """Warm *pool*'s connections up with the first *warmup* bodies, then time the rest
    of them to *path* with the server's CPU read around it; *limits* is the level's
    timeout and how many errors end it early. *content_type* and *ok* go to
    :func:`benchmarks.loadgen.drive` (what is posted, which answers count)."""
    timeout, max_errors = limits
    warm = await drive(pool, path, bodies[:warmup], timeout, 1, content_type=content_type, ok=ok)
    if warm.errors:
        raise BenchmarkError(f"{label}: a warm-up request failed: {warm.errors[0]}")
    meter = Meter(server)
    meter.start()
    outcome = await drive(
        pool, path, bodies[warmup:], timeout, max_errors, status, content_type=content_type, ok=ok
    )
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


# --- sections measured in kinds through hosts (accounts, scep, oidc) ----------------------


@dataclass(frozen=True)
class KindPlan:
    """The load plan of a section that times kinds of request at each concurrency level,
    its rounds interleaving kinds and levels (the base of its parameters)."""

    concurrency: tuple[int, ...] = (1, 8)
    #: Timed requests per kind, level and round, in the order of ``concurrency``.
    requests: tuple[int, ...] = (100, 300)
    rounds: int = 3
    pin: bool = True
    level_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    #: A round stops early after this many failed requests.
    max_errors: int = 20

    def __post_init__(self) -> None:
        check_levels(self.concurrency, self.requests, self.rounds)

    @staticmethod
    def warmup_for(concurrency: int) -> int:
        return max(4, 2 * concurrency)

    def plan(self) -> list[tuple[int, int]]:
        """(concurrency, timed requests per round), level by level."""
        return list(zip(self.concurrency, self.requests, strict=True))

    def per_kind(self) -> int:
        """Requests of one kind sent to one server over the run, warm-ups included."""
        return requests_in_run(self.concurrency, self.requests, self.rounds, self.warmup_for)

    def limits(self) -> tuple[float, int]:
        """A level's timeout and how many errors end it early (:func:`timed_level`)."""
        return self.level_timeout_s, self.max_errors

    def describe_plan(self) -> dict[str, Any]:
        return {
            "concurrency": list(self.concurrency),
            "requests_per_round": list(self.requests),
            "rounds": self.rounds,
            "warmup": [self.warmup_for(c) for c in self.concurrency],
        }


@dataclass(frozen=True)
class HostKindPlan(KindPlan):
    """A :class:`KindPlan` through each of several hosts, next to the same kinds called
    in process: *n* calls per kind and repetition."""

    hosts: tuple[str, ...] = ("quart", "raw")
    n: int = 200
    repetitions: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.n, self.repetitions) < 1:
            raise ValueError("in-process calls and repetitions must be positive")


#: Per kind, per concurrency level: the rounds' samples.
KindSamples = dict[str, dict[int, list[RoundSample]]]


class KindHost(Protocol):
    """A server the rounds of :func:`kind_rounds` load: its name and its samples."""

    host: str
    samples: KindSamples


H = TypeVar("H", bound=KindHost)


async def kind_rounds(
    params: KindPlan,
    served: Sequence[H],
    kinds: Sequence[str],
    section: str,
    one_round: Callable[[H, str, int, int, int, str], Awaitable[RoundSample]],
) -> None:
    """Rounds x servers x kinds x levels, interleaved: ``one_round(server, kind,
    concurrency, warmup, timed, label)`` runs one, checks it and returns its sample,
    which lands in the server's ``samples[kind][concurrency]``."""
    pairs = [(s, kind) for s in served for kind in kinds]
    for s in served:
        s.samples = {k: {c: [] for c in params.concurrency} for k in kinds}
    for round_number, (s, kind), (concurrency, count) in schedule(
        params.rounds, pairs, params.plan()
    ):
        label = f"{section} {s.host} {kind} c={concurrency} round {round_number}/{params.rounds}"
        warmup = params.warmup_for(concurrency)
        sample = await one_round(s, kind, concurrency, warmup, count, label)
        s.samples[kind][concurrency].append(sample)


def collecting(
    accept: Callable[[int, bytes], bool] = accepted,
) -> tuple[list[bytes], Callable[[int, bytes], bool]]:
    """A ``drive`` *ok* predicate that also keeps the bodies it accepts, to be read later."""
    replies: list[bytes] = []

    def answered(status: int, body: bytes) -> bool:
        if accept(status, body):
            replies.append(body)
            return True
        return False

    return replies, answered


def crypto_split(cpu_us: float, crypto: Mapping[str, Any]) -> dict[str, Any]:
    """CPU per request against the crypto it needs (*crypto*'s ``sum_us``): share and the rest."""
    total = float(crypto["sum_us"])
    return {
        "crypto_us": crypto["sum_us"],
        "crypto_share": rounded(total / cpu_us, 3) if cpu_us else None,
        "rest_us": rounded(cpu_us - total, 1),
    }


def crypto_steps(samples: Mapping[str, Sequence[float]], steps: Sequence[str]) -> dict[str, Any]:
    """The median µs of each of *steps* (``NAME_us``) and their sum (``sum_us``)."""
    figures = {f"{name}_us": rounded(median(samples[name]), 2) for name in steps}
    total = sum(median(samples[name]) for name in steps)
    return {**figures, "sum_us": rounded(total, 2)}


def summarise_per_item(
    concurrency: int,
    per_round: int,
    samples: Sequence[RoundSample],
    item: str,
    crypto: Mapping[str, Any] | None = None,
    client_cores: bool = True,
) -> dict[str, Any]:
    """One level's figures per *item* ("request", "certificate": ``ITEMs_per_s``, server
    and client CPU µs per ITEM); with *crypto*, the server's CPU split against it."""
    level, latencies, elapsed = level_figures(concurrency, per_round, samples, f"{item}s_per_s")
    ok = len(latencies)
    if ok:
        level["latency_ms"] = latency_figures(latencies)
        used = server_cpu_used(samples)
        if used is not None:
            cpu_us = used / ok * 1e6
            level[f"server_cpu_us_per_{item}"] = rounded(cpu_us, 1)
            level["server_cpu_cores"] = rounded(used / elapsed)
            if crypto is not None:
                level.update(crypto_split(cpu_us, crypto))
        client_cpu = sum(s.client_cpu_s for s in samples)
        level[f"client_cpu_us_per_{item}"] = rounded(client_cpu / ok * 1e6, 1)
        if client_cores:
            level["client_cpu_cores"] = rounded(client_cpu / elapsed)
    return level


#: What a kind's best level repeats (:func:`kind_figures`).
BEST_KEYS = (
    "concurrency",
    "requests_per_s",
    "server_cpu_us_per_request",
    "crypto_us",
    "crypto_share",
    "rest_us",
)


def inprocess_figures(
    what: str,
    calls: int,
    rates: Sequence[float],
    cpus: Sequence[float],
    crypto: Mapping[str, Any],
) -> dict[str, Any]:
    """A kind's figures in process: the median of its repetitions' *rates* (calls per
    second) and *cpus* (CPU µs per call), that CPU split against *crypto*."""
    cpu_us = median(cpus)
    return {
        "what": what,
        "calls": calls,
        "requests_per_s": rounded(median(rates), 1),
        "per_repetition": spread(rates),
        "cpu_us_per_request": rounded(cpu_us, 1),
        "cpu_us_per_repetition": [rounded(c, 1) for c in cpus],
        "crypto": crypto,
        **crypto_split(cpu_us, crypto),
    }


def kind_figures(
    params: KindPlan,
    samples: KindSamples,
    kinds: Sequence[str],
    what: Mapping[str, str],
    crypto: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Per kind: what it is (from *what*), its levels and its best level with server CPU."""
    figures: dict[str, Any] = {}
    for kind in kinds:
        levels = [
            summarise_per_item(c, r, samples[kind][c], "request", crypto[kind])
            for c, r in params.plan()
        ]
        out: dict[str, Any] = {"what": what[kind], "levels": levels}
        measured = [lv for lv in levels if lv["ok"] and "server_cpu_us_per_request" in lv]
        if measured:
            best = max(measured, key=lambda lv: float(lv["requests_per_s"]))
            out["best"] = {key: best[key] for key in BEST_KEYS}
        figures[kind] = out
    return figures


def server_figures(server: ServerProcess, startup_s: float) -> dict[str, Any]:
    """A served host's command, pid, startup time and peak RSS (its exit status is added
    once it is stopped)."""
    return {
        "command": server.command,
        "pid": server.pid,
        "startup_s": rounded(startup_s),
        "peak_rss_kib": server.memory().total("VmHWM"),
    }


@dataclass(frozen=True)
class Started:
    """A ``devid serve`` subprocess that answered: where, and how long it took."""

    server: ServerProcess
    port: int
    context: ssl.SSLContext
    startup_s: float


def _start_host(
    ca: tuple[str, Path, Path],
    password: Path,
    directory: Path,
    cpus: tuple[int, ...] | None,
    timeout: float,
    started: list[ServerProcess],
    progress: Progress,
    section: str,
) -> Started:
    host, ca_dir, root = ca
    began = time.perf_counter()
    server = ServerProcess(ca_dir, password, directory / host, host, cpus=cpus, name=host)
    started.append(server)
    url = server.wait_ready(root, timeout)
    progress(f"{section}: devid serve --host {host} pid {server.pid} ready at {url}")
    context = ssl.create_default_context(cafile=str(root))
    port = int(url.rsplit(":", 1)[1])
    return Started(server, port, context, time.perf_counter() - began)


def serve_hosts(
    cas: Sequence[tuple[str, Path, Path]],
    directory: Path,
    pinning: Pinning,
    params: KindPlan,
    progress: Progress,
    section: str,
    measure: Callable[[list[Started]], dict[str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Start ``devid serve --host HOST`` for each (HOST, CA directory, root certificate)
    of *cas* (logs in *directory*/HOST), each pinned as *pinning* says and awaited for
    *params*' startup timeout; *measure* them (in *cas*' order, this process on the load
    generator's CPUs) before they are stopped, as they always are. Returns *measure*'s
    figures per host, each ``server`` with its exit status added."""
    password = write_password_file(directory / "password")
    started: list[ServerProcess] = []
    try:
        up = [
            _start_host(
                ca,
                password,
                directory,
                pinning.server,
                params.startup_timeout_s,
                started,
                progress,
                section,
            )
            for ca in cas
        ]
        with client_affinity(pinning.client):
            results = measure(up)
    finally:
        statuses: dict[str, Any] = {}
        for server in started:
            try:
                statuses[server.name] = server.stop()
            except Exception as exc:  # keep stopping the others
                statuses[server.name] = f"{type(exc).__name__}: {exc}"
            progress(f"{section}: {server.name} stopped (exit status {statuses[server.name]})")
    for host, figures in results.items():
        figures["server"]["exit_status"] = statuses.get(host)
    return results
