"""The signing path through a host: ``devid serve`` in a subprocess, loaded over HTTPS.

Each server runs as its own process (``devid serve --listen 127.0.0.1:0
--host quart|raw [--workers N]``) on a fresh P-256 CA of its own with the
default store (SQLite, WAL, ``synchronous=full``); the load generator is this
process (:mod:`benchmarks.loadgen`: h11 over trio's TLS streams, HTTP/1.1
keep-alive, verifying the server against the CA's root). Each round at a
concurrency level opens exactly that many connections (TLS handshakes are not
in the timed region) and warms them up before the timed requests. Every request carries a
fresh CSR and a one-time token minted just before its round.

Two sections use this machinery:

- ``http``: each host (quart, raw) at concurrency 1, 8, 32. All the servers are
  started first and the rounds interleave hosts and levels (round 1 of every
  host and level, then round 2, ...), so drift on a busy machine hits every
  figure alike. On a machine with at least two usable CPUs the servers are
  pinned to the first and the load generator to the second (``--no-pin`` turns
  this off), which is the set-up the issue's targets name.
- ``scaling``: the raw host with ``--workers 1..N``, unpinned, at one
  concurrency level, interleaved the same way.

All traffic goes to 127.0.0.1. Every round is bounded by a request count and a
deadline, and every server is always terminated (then killed if it lingers,
its workers too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import trio

from engine.jose import PrivateKey
from engine.keys import KeyType
from hosts.core.init import DEFAULT_PROVISIONER

from .common import (
    SIGN_PATH,
    BenchmarkError,
    ClientRequest,
    Progress,
    create_ca,
    make_client_requests,
    median,
    mint_tokens,
    percentile,
    provisioner_key,
    rounded,
    spread,
    write_password_file,
)
from .loadgen import LevelOutcome, Pool, drive
from .procs import (
    TreeMemory,
    children,
    descendants,
    proc_cpu_seconds,
    proc_status,
    tree_cpu_seconds,
    tree_memory,
    usable_cpus,
)

LOOPBACK = "127.0.0.1"
_URL_LINE = re.compile(r"https://127\.0\.0\.1:(\d+)")
#: A worker counts as started once its CPU time grows by less than this in IDLE_PROBE_S.
IDLE_CPU_S = 0.03
IDLE_PROBE_S = 0.3

# Kept for callers of the first version of this module.
_proc_status = proc_status
_proc_cpu_seconds = proc_cpu_seconds


@dataclass(frozen=True)
class ServerSpec:
    """One ``devid serve`` to start: which host, how many workers, on which CPUs."""

    label: str
    host: str = "quart"
    workers: int = 1
    #: CPUs the server (and its workers) may run on; None: any.
    cpus: tuple[int, ...] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "host": self.host,
            "workers": self.workers,
            "cpus": list(self.cpus) if self.cpus is not None else None,
        }


@dataclass(frozen=True)
class Pinning:
    """Where the servers and the load generator run (None: wherever the kernel puts them)."""

    server: tuple[int, ...] | None = None
    client: tuple[int, ...] | None = None

    @classmethod
    def choose(cls, enabled: bool) -> Pinning:
        """Servers on the first usable CPU, the load generator on the second, if there are two."""
        cpus = usable_cpus()
        if not enabled or len(cpus) < 2:
            return cls()
        return cls(server=(cpus[0],), client=(cpus[1],))

    def describe(self) -> dict[str, Any] | None:
        if self.server is None and self.client is None:
            return None
        return {
            "server_cpus": list(self.server) if self.server is not None else None,
            "client_cpus": list(self.client) if self.client is not None else None,
        }


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
        if len(self.requests) != len(self.concurrency):
            raise ValueError("one request count per concurrency level")
        if self.rounds < 1 or any(c < 1 for c in self.concurrency + self.requests):
            raise ValueError("concurrency levels and request counts must be positive")

    def warmup_for(self, concurrency: int) -> int:
        return self.warmup if self.warmup is not None else max(8, 2 * concurrency)

    def requests_per_server(self) -> int:
        plan = zip(self.concurrency, self.requests, strict=True)
        return self.rounds * sum(self.warmup_for(c) + r for c, r in plan)

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


@dataclass(frozen=True)
class HttpParams(LoadParams):
    """The http section: every host in ``hosts`` at every concurrency level."""

    hosts: tuple[str, ...] = ("quart", "raw")
    #: Pin the servers to one CPU and the load generator to another (needs two CPUs).
    pin: bool = True

    def describe(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), **super().describe()}


@dataclass(frozen=True)
class ScalingParams(LoadParams):
    """The scaling section: the raw host with each worker count, at one concurrency level."""

    concurrency: tuple[int, ...] = (32,)
    requests: tuple[int, ...] = (800,)
    workers: tuple[int, ...] = (1, 2)
    host: str = "raw"

    def describe(self) -> dict[str, Any]:
        return {"host": self.host, "workers": list(self.workers), **super().describe()}


# --- the server process ----------------------------------------------------------


def devid_command() -> list[str]:
    """The ``devid`` console script next to this interpreter, else ``python -m hosts.cli``."""
    script = Path(sys.executable).with_name("devid")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "hosts.cli"]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of *pid*: with the pid, a process's identity."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])


class ServerProcess:
    """``devid serve`` on a free loopback port; stdout and stderr go to files.

    With ``workers > 1`` the process is a supervisor and its forked children
    serve; memory and CPU are then read over the whole process tree.
    """

    def __init__(
        self,
        data_dir: Path,
        password_file: Path,
        log_dir: Path,
        host: str,
        *,
        workers: int = 1,
        cpus: Sequence[int] | None = None,
        name: str = "server",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.workers = workers
        self.cpus = tuple(cpus) if cpus is not None else None
        self.command = [
            *devid_command(),
            "serve",
            "--data",
            str(data_dir),
            "--password-file",
            str(password_file),
            "--listen",
            f"{LOOPBACK}:0",
            "--host",
            host,
            "--log-level",
            "warning",
            "--log-format",
            "text",
        ]
        if workers != 1:
            self.command += ["--workers", str(workers)]
        self.command += list(extra_args)
        pin = self.cpus

        def set_affinity() -> None:  # in the child, before exec: threads and workers inherit it
            if pin is not None:
                os.sched_setaffinity(0, pin)

        log_dir.mkdir(parents=True, exist_ok=True)
        self._stdout: IO[bytes] = open(self.stdout_path, "wb")  # noqa: SIM115 (closed in stop)
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
                preexec_fn=set_affinity if pin is not None else None,
            )
        except BaseException:
            self._stdout.close()
            self._stderr.close()
            raise
        self.port: int | None = None
        #: (pid, start time) of every process seen in the tree, to clean up orphans.
        self._seen: dict[int, int | None] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def _failure(self, what: str) -> BenchmarkError:
        return BenchmarkError(
            f"{what}\ncommand: {' '.join(self.command)}\n"
            f"stderr (last lines):\n{_tail(self.stderr_path)}"
        )

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise self._failure(f"devid serve exited with status {self.process.returncode}")

    def wait_ready(self, root: Path, timeout: float) -> str:
        """Wait for the URL on stdout, for ``GET /health`` to answer 200 and, with
        workers, for every worker to have started and gone idle."""
        deadline = time.monotonic() + timeout
        while self.port is None:
            self._check_alive()
            match = _URL_LINE.search(self.stdout_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            if time.monotonic() > deadline:
                raise self._failure(f"devid serve printed no URL within {timeout:.0f} s")
            time.sleep(0.05)
        url = f"https://{LOOPBACK}:{self.port}"
        context = ssl.create_default_context(cafile=str(root))
        with httpx.Client(verify=context, timeout=2.0) as client:
            while True:
                self._check_alive()
                try:
                    if client.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise self._failure(f"{url}/health did not answer within {timeout:.0f} s")
                time.sleep(0.05)
        if self.workers > 1:
            self._wait_workers(deadline)
        self.tree_pids()  # remember the workers, to stop them even if the supervisor dies
        return url

    def _wait_workers(self, deadline: float) -> None:
        while True:
            self._check_alive()
            kids = children(self.pid)
            if len(kids) >= self.workers:
                before = tree_cpu_seconds(kids)
                time.sleep(IDLE_PROBE_S)
                after = tree_cpu_seconds(kids)
                if len(after) >= self.workers and all(
                    after[k] - before.get(k, 0.0) < IDLE_CPU_S for k in after
                ):
                    return
            elif time.monotonic() > deadline:
                raise self._failure(
                    f"{len(kids)} of {self.workers} workers running when the deadline passed"
                )
            if time.monotonic() > deadline:
                return  # all there, just never idle: measure anyway
            time.sleep(0.05)

    def tree_pids(self) -> list[int]:
        """The server and its workers (and remembers them for :meth:`stop`)."""
        pids = [self.pid, *descendants(self.pid)]
        for pid in pids:
            if pid not in self._seen:
                self._seen[pid] = _start_time(pid)
        return pids

    def memory(self) -> TreeMemory:
        return tree_memory(self.pid)

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM summed over the server and its workers."""
        tree = self.memory()
        out: dict[str, int] = {}
        for key in ("VmRSS", "VmHWM"):
            value = tree.total(key)
            if value is not None:
                out[key] = value
        return out

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds per process of the tree, now."""
        return tree_cpu_seconds(self.tree_pids())

    def cpu_seconds(self) -> float | None:
        snapshot = self.cpu_snapshot()
        return sum(snapshot.values()) if snapshot else None

    def _orphans(self) -> list[int]:
        """Remembered workers still running after the supervisor is gone."""
        alive = []
        for pid, started in self._seen.items():
            if pid == self.pid:
                continue
            if started is not None and _start_time(pid) == started:
                alive.append(pid)
        return alive

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL after 10 s; always reaps the process, and
        terminates any worker the supervisor left behind."""
        try:
            if self.process.poll() is None:
                self.tree_pids()
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                orphans = self._orphans()
                for pid in orphans:
                    with suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 5
                while orphans and time.monotonic() < deadline:
                    time.sleep(0.05)
                    orphans = self._orphans()
                if not orphans:
                    break
        finally:
            self._stdout.close()
            self._stderr.close()
        return self.process.returncode


@contextmanager
def client_affinity(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Run this (the load generator's) thread on *cpus* for the duration."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- the load generator --------------------------------------------------------------


def encode_bodies(requests: Sequence[ClientRequest], tokens: Sequence[str]) -> list[bytes]:
    """``POST /1.0/sign`` bodies as JSON bytes: {csr, ott}."""
    return [
        json.dumps({"csr": r.csr_pem, "ott": t}).encode()
        for r, t in zip(requests, tokens, strict=True)
    ]


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


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds used per pid between two snapshots (a pid new in *after* counts whole)."""
    return {pid: after[pid] - before.get(pid, 0.0) for pid in after}


@dataclass
class Target:
    """A started server with what its clients need."""

    spec: ServerSpec
    server: ServerProcess
    url: str
    root: Path
    token_key: PrivateKey
    startup_s: float
    idle_memory: TreeMemory
    context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(self.root))

    @property
    def sign_url(self) -> str:
        return f"{self.url}{SIGN_PATH}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def pool(self, size: int) -> Pool:
        """*size* keep-alive connections to this server (open with ``async with``)."""
        return Pool(LOOPBACK, self.port, self.context, size)

    def bodies(self, requests: Sequence[ClientRequest]) -> list[bytes]:
        """Bodies with tokens minted now, for this server's audience."""
        tokens = mint_tokens(
            self.token_key, requests, self.sign_url, provisioner=DEFAULT_PROVISIONER
        )
        return encode_bodies(requests, tokens)


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
        warm = await drive(pool, SIGN_PATH, bodies[:warmup], params.level_timeout_s, 1)
        if warm.errors:
            raise BenchmarkError(f"{label}: a warm-up request failed: {warm.errors[0]}")
        server_cpu = server.cpu_snapshot()
        client_cpu = time.process_time()
        outcome = await drive(
            pool,
            SIGN_PATH,
            bodies[warmup:],
            params.level_timeout_s,
            params.max_errors,
            status if progress.live else None,
        )
        client_cpu = time.process_time() - client_cpu
        server_cpu_after = server.cpu_snapshot()
    if server.process.poll() is not None:
        raise BenchmarkError(f"{label}: the server exited with status {server.process.returncode}")
    by_pid = cpu_delta(server_cpu, server_cpu_after) if server_cpu and server_cpu_after else {}
    sample = RoundSample(
        outcome=outcome,
        server_cpu_s=sum(by_pid.values()) if by_pid else None,
        client_cpu_s=client_cpu,
        server_cpu_by_pid=by_pid,
    )
    errors = outcome.errors
    progress(
        f"{label}: {sample.rate:7.1f}/s"
        + (f"  {len(errors)} errors, first: {errors[0]}" if errors else "")
        + ("  (deadline reached)" if outcome.timed_out else "")
    )
    return sample


def latency_figures(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50": rounded(percentile(latencies, 0.50) * 1e3),
        "p90": rounded(percentile(latencies, 0.90) * 1e3),
        "p99": rounded(percentile(latencies, 0.99) * 1e3),
        "max": rounded(max(latencies) * 1e3),
        "mean": rounded(sum(latencies) / len(latencies) * 1e3),
    }


def summarise_level(
    concurrency: int, per_round: int, samples: Sequence[RoundSample], root_pid: int
) -> dict[str, Any]:
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
        "issuances_per_s": rounded(median(rates), 1) if ok else 0.0,
        "per_round": spread(rates),
    }
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
        server_cpu = [s.server_cpu_s for s in samples]
        if all(c is not None for c in server_cpu):
            used = sum(c for c in server_cpu if c is not None)
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


def _prepare_target(
    spec: ServerSpec, base: Path, progress: Progress, section: str
) -> tuple[ServerProcess, Path, PrivateKey, float]:
    directory = base / re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.label)
    progress(
        f"{section} {spec.label}: creating a P-256 CA, starting devid serve --host {spec.host}"
    )
    init = create_ca(directory / "ca", KeyType.P256)
    password_file = write_password_file(directory / "password")
    token_key = provisioner_key(directory / "ca")
    started = time.perf_counter()
    server = ServerProcess(
        directory / "ca",
        password_file,
        directory,
        spec.host,
        workers=spec.workers,
        cpus=spec.cpus,
    )
    return server, init.root_path, token_key, started


def start_targets(
    specs: Sequence[ServerSpec],
    base: Path,
    progress: Progress,
    section: str,
    startup_timeout: float,
    started: list[ServerProcess],
) -> list[Target]:
    """Start every server (appending it to *started* at once, so the caller stops it)."""
    pending: list[tuple[ServerSpec, ServerProcess, Path, PrivateKey, float]] = []
    for spec in specs:
        server, root, key, t0 = _prepare_target(spec, base, progress, section)
        started.append(server)
        pending.append((spec, server, root, key, t0))
    targets: list[Target] = []
    for spec, server, root, key, t0 in pending:
        url = server.wait_ready(root, startup_timeout)
        startup_s = time.perf_counter() - t0
        idle = server.memory()
        progress(
            f"{section} {spec.label}: pid {server.pid} ready at {url} after {startup_s:.1f} s"
            + (f" ({spec.workers} workers)" if spec.workers > 1 else "")
            + (f", CPUs {','.join(map(str, spec.cpus))}" if spec.cpus is not None else "")
        )
        targets.append(Target(spec, server, url, root, key, startup_s, idle))
    return targets


def stop_all(servers: Sequence[ServerProcess], progress: Progress, section: str) -> dict[int, Any]:
    statuses: dict[int, Any] = {}
    for server in servers:
        try:
            statuses[server.pid] = server.stop()
        except Exception as exc:  # keep stopping the others
            statuses[server.pid] = f"{type(exc).__name__}: {exc}"
    if servers:
        progress(
            f"{section}: servers stopped (exit status {', '.join(map(str, statuses.values()))})"
        )
    return statuses


async def _interleaved(
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
    for round_number in range(1, params.rounds + 1):
        for target in targets:
            for concurrency, count in zip(params.concurrency, params.requests, strict=True):
                chunk = requests[offset : offset + params.warmup_for(concurrency) + count]
                offset += len(chunk)
                label = (
                    f"{section} {target.spec.label} c={concurrency}"
                    f" round {round_number}/{params.rounds}"
                )
                sample = await one_round(
                    params, target, concurrency, target.bodies(chunk), label, progress
                )
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
            samples = trio.run(_interleaved, params, targets, requests, progress, section)
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


def _with_ratios(result: dict[str, Any], reference: float | None) -> dict[str, Any]:
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
    hosts = {r["label"]: _with_ratios(r, inprocess_reference_per_s) for r in results}
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
        _with_ratios(result, inprocess_reference_per_s)
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
