"""The signing path through a host: ``devid serve`` in a subprocess, loaded over HTTPS.

The server runs as its own process (``devid serve --listen 127.0.0.1:0``) on a
fresh P-256 CA with the default store (SQLite, WAL, ``synchronous=full``); the
load generator is this process: trio + ``httpx.AsyncClient`` over HTTP/1.1 with
keep-alive, verifying the server against the CA's root. Each concurrency level
gets its own client with exactly that many connections; a warm-up opens them
(TLS handshakes are not in the timed region) before the timed requests.
Every request carries a fresh CSR and a pre-minted one-time token.

All traffic goes to 127.0.0.1. Every level is bounded by a request count and a
deadline, and the server is always terminated (then killed if it lingers).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import trio

from engine.jose import PrivateKey
from engine.keys import KeyType
from hosts.core.init import DEFAULT_PROVISIONER

from .common import (
    PASSWORD,
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
)

LOOPBACK = "127.0.0.1"
_URL_LINE = re.compile(r"https://127\.0\.0\.1:(\d+)")
_JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class HttpParams:
    concurrency: tuple[int, ...] = (1, 8, 32)
    #: Timed requests per level and round, in the order of ``concurrency``.
    requests: tuple[int, ...] = (200, 600, 800)
    #: Rounds per level, interleaved across levels; the median round is the headline.
    rounds: int = 3
    #: Untimed requests per level before the timed ones; None: max(8, 2 x concurrency).
    warmup: int | None = None
    level_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    client_key_type: KeyType = KeyType.P256
    host: str = "quart"
    #: A level stops early after this many failed requests.
    max_errors: int = 20

    def __post_init__(self) -> None:
        if len(self.requests) != len(self.concurrency):
            raise ValueError("one request count per concurrency level")
        if self.rounds < 1 or any(c < 1 for c in self.concurrency + self.requests):
            raise ValueError("concurrency levels and request counts must be positive")

    def warmup_for(self, concurrency: int) -> int:
        return self.warmup if self.warmup is not None else max(8, 2 * concurrency)

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "issuer_key_type": KeyType.P256.value,
            "client_key_type": self.client_key_type.value,
            "concurrency": list(self.concurrency),
            "requests_per_round": list(self.requests),
            "rounds": self.rounds,
            "warmup": [self.warmup_for(c) for c in self.concurrency],
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS (httpx.AsyncClient on trio)",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


# --- the server process ----------------------------------------------------------


def devid_command() -> list[str]:
    """The ``devid`` console script next to this interpreter, else ``python -m hosts.cli``."""
    script = Path(sys.executable).with_name("devid")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "hosts.cli"]


def _proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, ...)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0])
    except OSError:
        pass
    return out


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of *pid* (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ServerProcess:
    """``devid serve`` on a free loopback port; stdout and stderr go to files."""

    def __init__(self, data_dir: Path, password_file: Path, log_dir: Path, host: str) -> None:
        self.stdout_path = log_dir / "server.stdout"
        self.stderr_path = log_dir / "server.stderr"
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
        self._stdout: IO[bytes] = open(self.stdout_path, "wb")  # noqa: SIM115 (closed in stop)
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
            )
        except BaseException:
            self._stdout.close()
            self._stderr.close()
            raise
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def _failure(self, what: str) -> BenchmarkError:
        return BenchmarkError(
            f"{what}\ncommand: {' '.join(self.command)}\n"
            f"stderr (last lines):\n{_tail(self.stderr_path)}"
        )

    def wait_ready(self, root: Path, timeout: float) -> str:
        """Wait for the URL on stdout, then for ``GET /health`` to answer 200."""
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.process.poll() is not None:
                raise self._failure(f"devid serve exited with status {self.process.returncode}")
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
                if self.process.poll() is not None:
                    raise self._failure(f"devid serve exited with status {self.process.returncode}")
                try:
                    if client.get(f"{url}/health").status_code == 200:
                        return url
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise self._failure(f"{url}/health did not answer within {timeout:.0f} s")
                time.sleep(0.05)

    def memory_kib(self) -> dict[str, int]:
        status = _proc_status(self.pid)
        return {k: status[k] for k in ("VmRSS", "VmHWM") if k in status}

    def cpu_seconds(self) -> float | None:
        return _proc_cpu_seconds(self.pid)

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL after 10 s; always reaps the process."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        finally:
            self._stdout.close()
            self._stderr.close()
        return self.process.returncode


# --- the load generator --------------------------------------------------------------


@dataclass
class LevelOutcome:
    latencies: list[float]
    errors: list[str]
    elapsed: float
    timed_out: bool


async def _drive(
    client: httpx.AsyncClient,
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    timeout: float,
    max_errors: int,
) -> LevelOutcome:
    """Send every body with at most *concurrency* in flight; stop at *timeout* seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies) and len(errors) < max_errors:
            body = bodies[next_index]
            next_index += 1  # no await since the check: trio tasks cannot interleave here
            started = clock()
            try:
                response = await client.post(url, content=body, headers=_JSON_HEADERS)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            finished = clock()
            if response.status_code == 201 and b'"crt"' in response.content:
                latencies.append(finished - started)
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:300]}")

    started = clock()
    with trio.move_on_after(timeout) as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(min(concurrency, len(bodies))):
                nursery.start_soon(worker)
    return LevelOutcome(latencies, errors, clock() - started, scope.cancelled_caught)


def _encode(requests: Sequence[ClientRequest], tokens: Sequence[str]) -> list[bytes]:
    return [
        json.dumps({"csr": r.csr_pem, "ott": t}).encode()
        for r, t in zip(requests, tokens, strict=True)
    ]


@dataclass
class RoundSample:
    """One timed round at one concurrency level."""

    outcome: LevelOutcome
    server_cpu_s: float | None
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return len(self.outcome.latencies) / self.outcome.elapsed


async def _one_round(
    params: HttpParams,
    server: ServerProcess,
    sign_url: str,
    context: ssl.SSLContext,
    concurrency: int,
    bodies: Sequence[bytes],
    label: str,
    progress: Progress,
) -> RoundSample:
    warmup = params.warmup_for(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        verify=context, http1=True, http2=False, limits=limits, timeout=30.0
    ) as client:
        warm = await _drive(
            client, sign_url, bodies[:warmup], concurrency, params.level_timeout_s, 1
        )
        if warm.errors:
            raise BenchmarkError(f"{label}: a warm-up request failed: {warm.errors[0]}")
        server_cpu = server.cpu_seconds()
        client_cpu = time.process_time()
        outcome = await _drive(
            client,
            sign_url,
            bodies[warmup:],
            concurrency,
            params.level_timeout_s,
            params.max_errors,
        )
        client_cpu = time.process_time() - client_cpu
        server_cpu_after = server.cpu_seconds()
    if server.process.poll() is not None:
        raise BenchmarkError(f"{label}: the server exited with status {server.process.returncode}")
    sample = RoundSample(
        outcome=outcome,
        server_cpu_s=(
            server_cpu_after - server_cpu
            if server_cpu is not None and server_cpu_after is not None
            else None
        ),
        client_cpu_s=client_cpu,
    )
    errors = outcome.errors
    progress(
        f"{label}: {sample.rate:7.1f}/s"
        + (f"  {len(errors)} errors, first: {errors[0]}" if errors else "")
        + ("  (deadline reached)" if outcome.timed_out else "")
    )
    return sample


def _summarise(
    concurrency: int, per_round: int, samples: Sequence[RoundSample], server: ServerProcess
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
        level["latency_ms"] = {
            "p50": rounded(percentile(latencies, 0.50) * 1e3),
            "p90": rounded(percentile(latencies, 0.90) * 1e3),
            "p99": rounded(percentile(latencies, 0.99) * 1e3),
            "max": rounded(max(latencies) * 1e3),
            "mean": rounded(sum(latencies) / ok * 1e3),
        }
        server_cpu = [s.server_cpu_s for s in samples]
        if all(c is not None for c in server_cpu):
            used = sum(c for c in server_cpu if c is not None)
            level["server_cpu_ms_per_issuance"] = rounded(used / ok * 1e3)
            level["server_cpu_cores"] = rounded(used / elapsed)
        client_cpu = sum(s.client_cpu_s for s in samples)
        level["client_cpu_ms_per_issuance"] = rounded(client_cpu / ok * 1e3)
        level["client_cpu_cores"] = rounded(client_cpu / elapsed)
    level["server_memory_kib"] = server.memory_kib()
    return level


async def _run_levels(
    params: HttpParams,
    server: ServerProcess,
    url: str,
    root: Path,
    token_key: PrivateKey,
    requests: Sequence[ClientRequest],
    progress: Progress,
) -> list[dict[str, Any]]:
    """Rounds x levels, interleaved (round 1 of every level, then round 2, ...)."""
    context = ssl.create_default_context(cafile=str(root))
    sign_url = f"{url}{SIGN_PATH}"
    samples: dict[int, list[RoundSample]] = {c: [] for c in params.concurrency}
    offset = 0
    for round_number in range(1, params.rounds + 1):
        for concurrency, count in zip(params.concurrency, params.requests, strict=True):
            chunk = requests[offset : offset + params.warmup_for(concurrency) + count]
            offset += len(chunk)
            # Minted just before use, so no token nears its 5-minute expiry.
            tokens = mint_tokens(token_key, chunk, sign_url, provisioner=DEFAULT_PROVISIONER)
            label = f"http c={concurrency} round {round_number}/{params.rounds}"
            samples[concurrency].append(
                await _one_round(
                    params,
                    server,
                    sign_url,
                    context,
                    concurrency,
                    _encode(chunk, tokens),
                    label,
                    progress,
                )
            )
    return [
        _summarise(c, r, samples[c], server)
        for c, r in zip(params.concurrency, params.requests, strict=True)
    ]


def run_http(
    params: HttpParams,
    work_dir: Path,
    progress: Progress,
    *,
    inprocess_reference_per_s: float | None,
    reference_source: str,
) -> dict[str, Any]:
    base = work_dir / "http"
    data_dir = base / "ca"
    progress("http: creating a P-256 CA and the password file")
    init = create_ca(data_dir, KeyType.P256)
    password_file = base / "password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(PASSWORD + b"\n")
    token_key = provisioner_key(data_dir)
    plan = zip(params.concurrency, params.requests, strict=True)
    total = params.rounds * sum(params.warmup_for(c) + r for c, r in plan)
    progress(f"http: preparing {total} {params.client_key_type.value} client keys and CSRs")
    requests = make_client_requests(total, params.client_key_type, prefix="http")
    progress(f"http: starting devid serve --host {params.host}")
    started = time.perf_counter()
    server = ServerProcess(data_dir, password_file, base, params.host)
    try:
        url = server.wait_ready(init.root_path, params.startup_timeout_s)
        startup_s = time.perf_counter() - started
        idle_memory = server.memory_kib()
        progress(f"http: server pid {server.pid} ready at {url} after {startup_s:.1f} s")
        levels = trio.run(
            _run_levels, params, server, url, init.root_path, token_key, requests, progress
        )
        peak = server.memory_kib()
    finally:
        returncode = server.stop()
        progress(f"http: server stopped (exit status {returncode})")
    for level in levels:
        rate = float(level["issuances_per_s"])
        level["ratio_to_inprocess"] = (
            rounded(rate / inprocess_reference_per_s, 3) if inprocess_reference_per_s else None
        )
    return {
        "parameters": params.describe(),
        "server": {
            "command": server.command,
            "pid": server.pid,
            "startup_s": rounded(startup_s),
            "idle_rss_kib": idle_memory.get("VmRSS"),
            "peak_rss_kib": peak.get("VmHWM"),
            "exit_status": returncode,
        },
        "inprocess_reference": {
            "issuances_per_s": inprocess_reference_per_s,
            "source": reference_source,
        },
        "levels": levels,
    }
