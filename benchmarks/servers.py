"""The servers a benchmark loads: ``devid serve`` subprocesses, measured from outside.

A :class:`ServerProcess` is :class:`hosts.testing.servers.DevidServer` (``devid
serve --listen 127.0.0.1:0 --host quart|raw [--workers N]`` with its output
in files, ready once ``/health`` answers over TLS, always stopped, workers a
dead supervisor left behind included) plus what a benchmark reads of it: CPU
seconds and memory over its process tree (:mod:`benchmarks.procs`). A server
with workers counts as ready once every worker has started and gone idle.

:class:`Pinning` keeps the servers to one CPU and the load generator
(:func:`client_affinity`) to another; :func:`start_targets` creates a fresh
P-256 CA per :class:`ServerSpec`, starts every server before waiting for any,
and gives back :class:`Target` (a ready server with the token key and TLS
context its clients need); :func:`stop_all` stops them, whatever happened.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.jose import PrivateKey
from engine.keys import KeyType
from hosts.core.init import DEFAULT_PROVISIONER
from hosts.testing.ports import LOOPBACK
from hosts.testing.processes import ProcessError
from hosts.testing.servers import DevidServer

from .common import (
    SIGN_PATH,
    BenchmarkError,
    ClientRequest,
    Progress,
    create_ca,
    encode_bodies,
    mint_tokens,
    provisioner_key,
    write_password_file,
)
from .loadgen import Pool
from .procs import TreeMemory, children, tree_cpu_seconds, tree_memory, usable_cpus

#: A worker counts as started once its CPU time grows by less than this in IDLE_PROBE_S.
IDLE_CPU_S = 0.03
IDLE_PROBE_S = 0.3
#: What the benchmark servers log: warnings, as text (a log line per request would cost).
LOG_ARGUMENTS = ("--log-level", "warning", "--log-format", "text")

#: With ``--flame DIR``: every server is sampled by py-spy from ready to stop, and its
#: flame graph written there as ``NAME-PID.svg``. None: no sampling.
FLAME_DIR: Path | None = None
#: py-spy's sampling rate (per second): low enough to cost the server little.
FLAME_RATE = 250
#: The section running now, the first part of a flame graph's name.
FLAME_SECTION = "run"


def flame_missing() -> str | None:
    """Why ``--flame`` cannot work here (py-spy not installed), or None."""
    return None if shutil.which("py-spy") or _venv_py_spy().exists() else "py-spy is not installed"


def _venv_py_spy() -> Path:
    import sys

    return Path(sys.executable).with_name("py-spy")


class FlameRecorder:
    """py-spy attached to a running server (and its workers) until :meth:`stop`, which
    makes it write the flame graph. It samples from outside without stopping the
    process (``--nonblocking``); its own CPU is not the server's."""

    def __init__(self, pid: int, out: Path) -> None:
        exe = shutil.which("py-spy") or str(_venv_py_spy())
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.log = out.with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                    "--rate", str(FLAME_RATE), "--format", "flamegraph", "--output", str(out),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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


class ServerProcess:
    """``devid serve`` on a free loopback port, started at once; stdout and stderr go
    to ``LOG_DIR/NAME.out`` and ``LOG_DIR/NAME.log``.

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
        self.workers = workers
        self.name = name
        self.flame: FlameRecorder | None = None
        self.served = DevidServer.launch(
            data_dir,
            log_dir / f"{name}.log",
            host=host,
            password_file=password_file,
            workers=workers,
            cpus=cpus,
            extra=(*LOG_ARGUMENTS, *extra_args),
        )
        self.managed = self.served.process
        #: The ``subprocess.Popen`` of the server (the supervisor, with workers).
        self.process = self.managed.process

    @property
    def pid(self) -> int:
        return self.managed.pid

    @property
    def command(self) -> list[str]:
        return self.managed.command

    @property
    def data_dir(self) -> Path:
        return self.served.data_dir

    def check_alive(self) -> None:
        """Raise :class:`BenchmarkError` if the server has exited."""
        code = self.process.poll()
        if code is not None:
            raise BenchmarkError(f"the server exited with status {code}")

    def wait_ready(self, root: Path, timeout: float) -> str:
        """Wait for the URL on stdout, for ``GET /health`` to answer 200 and, with
        workers, for every worker to have started and gone idle; the server's URL."""
        deadline = time.monotonic() + timeout
        try:
            self.served.wait_ready(root=root, timeout=timeout)
            if self.workers > 1:
                self._wait_workers(deadline)
        except ProcessError as exc:
            raise BenchmarkError(str(exc)) from None
        self.managed.tree_pids()  # remember the workers, to stop them even if the supervisor dies
        if FLAME_DIR is not None and self.flame is None:
            out = FLAME_DIR / f"{FLAME_SECTION}-{self.name}-{self.pid}.svg"
            self.flame = FlameRecorder(self.pid, out)
        return self.served.url

    def _wait_workers(self, deadline: float) -> None:
        while True:
            self.managed.check_alive()
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
                raise self.managed.failure(
                    f"had {len(kids)} of {self.workers} workers running when the deadline passed"
                )
            if time.monotonic() > deadline:
                return  # all there, just never idle: measure anyway
            time.sleep(0.05)

    def tree_pids(self) -> list[int]:
        """The server and its workers (remembered, so that :meth:`stop` finds them)."""
        return self.managed.tree_pids()

    def memory(self) -> TreeMemory:
        return tree_memory(self.pid)

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds per process of the tree, now."""
        return tree_cpu_seconds(self.tree_pids())

    def cpu_seconds(self) -> float | None:
        snapshot = self.cpu_snapshot()
        return sum(snapshot.values()) if snapshot else None

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL after 10 s; always reaps the process, and
        terminates any worker the supervisor left behind. A flame graph being recorded
        is written first."""
        if self.flame is not None:
            self.flame.stop()
            self.flame = None
        return self.managed.stop(timeout=10.0)


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
