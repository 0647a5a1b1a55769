"""ACME: complete orders per second, devid against pebble, side by side in one run.

Complete orders (new account once per connection, then per order: newOrder,
the authorization, its http-01 challenge, validation, finalize with a fresh
CSR, certificate download) against devid's ACME server (``devid serve`` as a
subprocess, each host named by ``--acme-host``: quart and raw by default) and
against Debian's ``pebble``, all on 127.0.0.1, in the same run, by the same
client (:mod:`benchmarks.acme_client`) with the same local http-01 responder.
Validation is never skipped: every server's validator resolves the order's
name and fetches the key authorization from the responder.

The set-up, identical for every server:

- names: every order is for a new name ``o<i>-<run>.acme-bench.test`` (so no
  server can reuse an authorization); ``pebble-challtestsrv`` is the DNS
  server for both validators (devid ``--acme-dns-resolver``, pebble
  ``-dnsserver``), answering every A query with 127.0.0.1 and AAAA with no
  address (``-defaultIPv6 ""``), so both fetch from 127.0.0.1;
- http-01: one responder (:class:`benchmarks.acme_client.Http01Responder`) on
  one port P, devid's ``--acme-http01-port P`` and pebble's ``httpPort``;
- devid: a fresh P-256 CA (``devid init`` defaults: the ``acme`` provisioner
  allows any DNS name, issues from the TLS CA), the default SQLite store
  (``synchronous=full``), ``--log-level warning``;
- pebble: ``PEBBLE_VA_NOSLEEP=1`` (no random sleep of up to 15 s before
  validating), ``PEBBLE_VA_ALWAYS_VALID=0`` (validation is done, not
  assumed), ``PEBBLE_WFE_NONCEREJECT=0`` (no random 5 % of badNonce
  refusals, which would cost this client retries devid never asks for),
  ``PEBBLE_AUTHZREUSE=0`` (no authorization reuse; with unique names there is
  none to reuse anyway); a TLS certificate for 127.0.0.1 from a throw-away CA
  made here; its in-memory storage and its own per-request log lines (it has
  no switch to silence them; they go to a file);
- pinning: with two usable CPUs or more, every server (devid, pebble) and the
  DNS server run on the first CPU and the client with the responder on the
  second (``--no-pin`` turns it off), as in the http section; pinned to one
  CPU, pebble's Go runtime runs with GOMAXPROCS=1.

Each round opens ``concurrency`` connections to a server, creates one
account per connection (timed apart: ``newAccount ms``) and does one untimed
warm-up order per connection; then the timed orders go through the
connections, one in flight per connection. Rounds interleave the servers and
levels (round 1 of every server and level, then round 2, ...), the median
round is the headline, and ``devid ÷ pebble`` divides rates at the same
concurrency (and the best level of each). Before the rounds, one untimed
order through every server proves the path and reads the issuer's key type.

The servers differ in ways the client cannot change, recorded with the
figures: pebble's validator makes three validation requests per challenge
(its log says "Starting 3 validations."), devid's one; pebble issues from an
RSA-2048 intermediate it generates at start, devid from its P-256 TLS CA;
pebble keeps everything in memory, devid in SQLite with an fsync per commit;
devid sends ``Retry-After: 1`` on a processing challenge, pebble none (the
client ignores both, see :mod:`benchmarks.acme_client`).

The result (``results["acme"]``):

- ``parameters``: :meth:`AcmeParams.describe` plus the pinning;
- ``setup``: pebble's version, the DNS server and the responder (tokens
  served and refused), the run's domain;
- ``servers_by_label``: per server (``devid-quart``, ``devid-raw``,
  ``pebble``) its ``levels`` (orders/s with the spread of the rounds, latency
  percentiles, mean ms per step, polls and validator fetches per order, CPU of
  the server, of the DNS server and of the client, newAccount ms, Retry-After
  values seen), its ``best`` level, the server process (command, pid, RSS,
  exit status) and its ``issuer_key``; pebble's also its environment and
  config;
- ``servers``: the flat :class:`ServerFigures` of each server at its best level;
- ``ratios``: per devid host, devid ÷ pebble at each concurrency and best ÷ best;
  ``ratio_devid_to_pebble`` is the raw host's best ÷ best (``ratio_host``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import trio

from engine.keys import KeyType

from .acme_client import (
    STEPS,
    AcmeClient,
    AcmeFailure,
    Http01Responder,
    OrderPlan,
    OrderResult,
    bind_responder_socket,
    check_chain,
    make_order_plans,
)
from .common import (
    BenchmarkError,
    Progress,
    SectionSkipped,
    create_ca,
    median,
    percentile,
    rounded,
    spread,
)
from .common import write_password_file as _write_password_file
from .http import LOOPBACK, Pinning, ServerProcess, client_affinity
from .loadgen import Connection, ConnectionBroken
from .procs import TreeMemory, proc_cpu_seconds, tree_cpu_seconds, tree_memory

#: The default ACME provisioner a new devid CA gets (hosts.core.init.ACME_PROVISIONER).
ACME_PROVISIONER = "acme"
#: Where devid serves that provisioner's directory (engine.acme.resources).
DIRECTORY_PATH = f"/acme/{ACME_PROVISIONER}/directory"
#: pebble's directory.
PEBBLE_DIRECTORY_PATH = "/dir"
#: pebble's environment for the benchmark (each explained in the module docstring).
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_VA_ALWAYS_VALID": "0",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",
}
DOMAIN = "acme-bench.test"
DEFAULT_HOSTS = ("quart", "raw")


@dataclass(frozen=True)
class AcmeParams:
    concurrency: tuple[int, ...] = (1, 8)
    #: Timed orders per level and round, in the order of ``concurrency``.
    orders: tuple[int, ...] = (40, 200)
    rounds: int = 3
    #: The devid hosts measured (each its own ``devid serve``); pebble is always measured.
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    pin: bool = True
    #: Untimed orders per connection at the start of every round.
    warmup_per_connection: int = 1
    round_timeout_s: float = 120.0
    startup_timeout_s: float = 60.0
    #: A round stops early after this many failed orders.
    max_errors: int = 10

    def __post_init__(self) -> None:
        if len(self.orders) != len(self.concurrency):
            raise ValueError("one order count per concurrency level")
        if self.rounds < 1 or any(c < 1 for c in self.concurrency + self.orders):
            raise ValueError("concurrency levels, order counts and rounds must be positive")
        if not self.hosts:
            raise ValueError("at least one devid host")

    def orders_per_server(self) -> int:
        plan = zip(self.concurrency, self.orders, strict=True)
        return self.rounds * sum(c * self.warmup_per_connection + n for c, n in plan)

    def describe(self) -> dict[str, Any]:
        return {
            "concurrency": list(self.concurrency),
            "orders_per_round": list(self.orders),
            "rounds": self.rounds,
            "devid_hosts": list(self.hosts),
            "warmup_orders_per_connection": self.warmup_per_connection,
            "round_timeout_s": self.round_timeout_s,
            "order": "newOrder (one dns identifier, a new name each) -> authorization ->"
            " http-01 challenge -> validation (poll) -> finalize (fresh P-256 CSR) ->"
            " download (PEM chain); the chain is checked after the timer stops",
            "account": "one newAccount (P-256, ES256) per connection and round, timed apart",
            "polling": "no Retry-After: after the responder served the token, the first poll"
            " at once, then 2, 4, 8 ... ms apart, at most 50 ms (same for every server)",
            "client": "benchmarks.acme_client: h11 over trio TLS streams, one keep-alive"
            " connection per concurrent order",
            "pebble_environment": PEBBLE_ENV,
        }


@dataclass(frozen=True)
class ServerFigures:
    """One server's headline figures (its best level; the median round there)."""

    server: str
    orders_per_s: float
    p50_ms: float
    p99_ms: float
    orders: int
    errors: int
    server_cpu_ms_per_order: float | None
    peak_rss_kib: int | None


# --- prerequisites ---------------------------------------------------------------------


def pebble_missing() -> str | None:
    missing = [tool for tool in ("pebble", "pebble-challtestsrv") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: scripts/install-system-deps installs them"
            " (Debian package pebble)"
        )
    return None


def pebble_version() -> str | None:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "pebble"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


# --- helper processes --------------------------------------------------------------------


def free_port(udp_too: bool = False) -> int:
    """A loopback port free for TCP (and UDP when asked) right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise BenchmarkError("no free loopback port")


def _affinity(cpus: tuple[int, ...] | None) -> Any:
    if cpus is None:
        return None

    def set_affinity() -> None:  # in the child, before exec
        os.sched_setaffinity(0, cpus)

    return set_affinity


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ChildProcess:
    """A helper binary (pebble, pebble-challtestsrv) with its output in a file."""

    def __init__(
        self,
        command: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cpus: tuple[int, ...] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = command
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=_affinity(cpus),
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(
                f"{Path(self.command[0]).name} exited with status {self.process.returncode}\n"
                f"output (last lines):\n{_tail(self.log_path)}"
            )

    def cpu_snapshot(self) -> dict[int, float]:
        return tree_cpu_seconds([self.pid])

    def memory(self) -> TreeMemory:
        return tree_memory(self.pid)

    def stop(self) -> int | None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        finally:
            self._log.close()
        return self.process.returncode


def start_dns(
    work_dir: Path, cpus: tuple[int, ...] | None, timeout: float
) -> tuple[ChildProcess, int]:
    """pebble-challtestsrv as the DNS server of every validator: A -> 127.0.0.1, no AAAA."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    failure = ""
    for attempt in range(3):
        dns_port, management_port = free_port(udp_too=True), free_port()
        command = [
            str(shutil.which("pebble-challtestsrv")),
            "-dns01",
            f"{LOOPBACK}:{dns_port}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"{LOOPBACK}:{management_port}",
            "-defaultIPv4",
            LOOPBACK,
            "-defaultIPv6",
            "",
        ]
        child = ChildProcess(command, work_dir / f"challtestsrv-{attempt}.log", cpus=cpus)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.process.poll() is None:
            try:
                query = dns.message.make_query(f"ready.{DOMAIN}.", "A")
                reply = dns.query.udp(query, LOOPBACK, port=dns_port, timeout=0.5)
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    return child, dns_port
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.05)
        child.stop()
        failure = _tail(child.log_path)
    raise BenchmarkError(f"pebble-challtestsrv did not start:\n{failure}")


def make_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 (pebble's ACME listener):
    (CA certificate, server certificate, server key), PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devid benchmark pebble TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(paths[2], 0o600)
    return paths


class PebbleProcess(ChildProcess):
    """``pebble -config FILE -dnsserver DNS`` with the benchmark's environment."""

    def __init__(
        self, work_dir: Path, http01_port: int, dns_port: int, cpus: tuple[int, ...] | None
    ) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.root, cert, key = make_tls_material(work_dir / "tls")
        self.port = free_port()
        self.config = {
            "pebble": {
                "listenAddress": f"{LOOPBACK}:{self.port}",
                "managementListenAddress": f"{LOOPBACK}:{free_port()}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http01_port,
                # tls-alpn-01 is offered by pebble but never answered here; a free port.
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config_path = work_dir / "pebble-config.json"
        config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self.env = dict(PEBBLE_ENV)
        command = [
            str(shutil.which("pebble")),
            "-config",
            str(config_path),
            "-dnsserver",
            f"{LOOPBACK}:{dns_port}",
        ]
        super().__init__(
            command, work_dir / "pebble.log", env={**os.environ, **self.env}, cpus=cpus
        )

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def wait_ready(self, timeout: float) -> str:
        """The directory URL, once it answers 200."""
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=str(self.root))
        with httpx.Client(verify=context, timeout=2.0, trust_env=False) as client:
            while True:
                self.check_alive()
                try:
                    if client.get(f"{self.url}{PEBBLE_DIRECTORY_PATH}").status_code == 200:
                        return f"{self.url}{PEBBLE_DIRECTORY_PATH}"
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"pebble did not answer within {timeout:.0f} s\n{_tail(self.log_path)}"
                    )
                time.sleep(0.05)


# --- targets --------------------------------------------------------------------------------


@dataclass
class AcmeTarget:
    """One running ACME server with what the client needs."""

    label: str
    kind: str  # "devid" or "pebble"
    server: ServerProcess | PebbleProcess
    directory_url: str
    root: Path
    startup_s: float
    idle_memory: TreeMemory
    context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(self.root))

    @property
    def port(self) -> int:
        return int(self.directory_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _devid_server(
    host: str,
    base: Path,
    http01_port: int,
    dns_port: int,
    cpus: tuple[int, ...] | None,
    progress: Progress,
) -> tuple[ServerProcess, Path]:
    directory = base / f"devid-{host}"
    progress(f"acme devid-{host}: creating a P-256 CA, starting devid serve --host {host}")
    init = create_ca(directory / "ca", KeyType.P256)
    password = _write_password_file(directory / "password")
    server = ServerProcess(
        directory / "ca",
        password,
        directory,
        host,
        cpus=cpus,
        extra_args=(
            "--acme-http01-port",
            str(http01_port),
            "--acme-dns-resolver",
            f"{LOOPBACK}:{dns_port}",
        ),
    )
    return server, init.root_path


# --- the rounds -------------------------------------------------------------------------------


@dataclass
class AcmeRound:
    """One timed round at one concurrency level on one server."""

    results: list[OrderResult]
    errors: list[str]
    elapsed: float
    timed_out: bool
    account_seconds: list[float]
    server_cpu_s: float | None
    dns_cpu_s: float | None
    client_cpu_s: float
    #: Retry-After values the server sent, per step (ignored by the client).
    retry_after: dict[str, set[str]] = field(default_factory=dict)
    #: Tokens the responder served during the timed orders (the validators' fetches).
    fetches: int = 0

    @property
    def rate(self) -> float:
        return len(self.results) / self.elapsed if self.elapsed else 0.0


def first_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (trio's nurseries wrap what their tasks raise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    leaf = first_error(exc)
    return str(leaf) if isinstance(leaf, BenchmarkError) else f"{type(leaf).__name__}: {leaf}"


async def _open_client(target: AcmeTarget) -> AcmeClient:
    connection = await Connection.open(LOOPBACK, target.port, target.context)
    client = AcmeClient(connection, target.directory_url)
    try:
        await client.start()
    except BaseException:
        await connection.aclose()
        raise
    return client


async def _reconnect(client: AcmeClient, target: AcmeTarget) -> None:
    """A new connection for an account whose connection broke (the account stays)."""
    await client.connection.aclose()
    client.use(await Connection.open(LOOPBACK, target.port, target.context))


async def one_round(
    params: AcmeParams,
    target: AcmeTarget,
    concurrency: int,
    warm: Sequence[OrderPlan],
    timed: Sequence[OrderPlan],
    responder: Http01Responder,
    dns: ChildProcess,
    label: str,
    progress: Progress,
) -> AcmeRound:
    """Open *concurrency* accounts (timed apart), warm up, then time the orders in *timed*."""
    clients: list[AcmeClient] = []
    account_seconds: list[float] = []

    async def set_up(index: int) -> None:
        client = await _open_client(target)
        clients.append(client)
        started = time.perf_counter()
        await client.new_account()
        account_seconds.append(time.perf_counter() - started)
        for plan in warm[index::concurrency]:
            result = await client.complete_order(plan, responder)
            check_chain(plan, result.chain_pem)

    results: list[OrderResult] = []
    errors: list[str] = []
    next_index = 0
    clock = time.perf_counter

    async def worker(client: AcmeClient) -> None:
        nonlocal next_index
        while next_index < len(timed) and len(errors) < params.max_errors:
            plan = timed[next_index]
            next_index += 1  # no await since the check: trio tasks cannot interleave here
            try:
                result = await client.complete_order(plan, responder)
                check_chain(plan, result.chain_pem)
            except AcmeFailure as exc:
                errors.append(str(exc))
                continue
            except (ConnectionBroken, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                try:
                    await _reconnect(client, target)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as again:
                    errors.append(f"reconnecting failed: {type(again).__name__}: {again}")
                    return
                continue
            result.chain_pem = b""  # checked; do not keep it
            results.append(result)
            progress.status(f"{label}: {len(results) + len(errors)}/{len(timed)}")

    try:
        try:
            with trio.fail_after(params.round_timeout_s):
                async with trio.open_nursery() as nursery:
                    for index in range(concurrency):
                        nursery.start_soon(set_up, index)
        except (AcmeFailure, ConnectionBroken, OSError, trio.TooSlowError, ExceptionGroup) as exc:
            raise BenchmarkError(f"{label}: set-up or warm-up failed: {_describe(exc)}") from None
        server_cpu = target.server.cpu_snapshot()
        dns_cpu = proc_cpu_seconds(dns.pid)
        client_cpu = time.process_time()
        served = responder.served
        started = clock()
        with trio.move_on_after(params.round_timeout_s) as scope:
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(worker, client)
        elapsed = clock() - started
        client_used = time.process_time() - client_cpu
        fetches = responder.served - served
        server_after = target.server.cpu_snapshot()
        dns_after = proc_cpu_seconds(dns.pid)
    finally:
        for client in clients:
            await client.connection.aclose()
    retry_after: dict[str, set[str]] = {}
    for client in clients:
        for step, values in client.retry_after.items():
            retry_after.setdefault(step, set()).update(values)
    if isinstance(target.server, ServerProcess):
        if target.server.process.poll() is not None:
            raise BenchmarkError(f"{label}: the server exited ({target.server.process.returncode})")
    else:
        target.server.check_alive()
    server_used = (
        sum(server_after[p] - server_cpu.get(p, 0.0) for p in server_after)
        if server_cpu and server_after
        else None
    )
    sample = AcmeRound(
        results=results,
        errors=errors,
        elapsed=elapsed,
        timed_out=scope.cancelled_caught,
        account_seconds=account_seconds,
        server_cpu_s=server_used,
        dns_cpu_s=dns_after - dns_cpu if dns_after is not None and dns_cpu is not None else None,
        client_cpu_s=client_used,
        retry_after=retry_after,
        fetches=fetches,
    )
    progress(
        f"{label}: {sample.rate:7.1f} orders/s"
        + (f"  {len(errors)} errors, first: {errors[0]}" if errors else "")
        + ("  (deadline reached)" if sample.timed_out else "")
    )
    return sample


async def _interleaved(
    params: AcmeParams,
    targets: Sequence[AcmeTarget],
    plans: Sequence[OrderPlan],
    responder: Http01Responder,
    dns: ChildProcess,
    progress: Progress,
) -> dict[str, dict[int, list[AcmeRound]]]:
    samples: dict[str, dict[int, list[AcmeRound]]] = {
        t.label: {c: [] for c in params.concurrency} for t in targets
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve)
        offset = 0
        for round_number in range(1, params.rounds + 1):
            for target in targets:
                for concurrency, count in zip(params.concurrency, params.orders, strict=True):
                    warm_count = concurrency * params.warmup_per_connection
                    warm = plans[offset : offset + warm_count]
                    timed = plans[offset + warm_count : offset + warm_count + count]
                    offset += warm_count + count
                    label = (
                        f"acme {target.label} c={concurrency} round {round_number}/{params.rounds}"
                    )
                    samples[target.label][concurrency].append(
                        await one_round(
                            params,
                            target,
                            concurrency,
                            warm,
                            timed,
                            responder,
                            dns,
                            label,
                            progress,
                        )
                    )
        nursery.cancel_scope.cancel()
    return samples


# --- summaries ----------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": rounded(percentile(values, 0.50) * 1e3),
        "p90": rounded(percentile(values, 0.90) * 1e3),
        "p99": rounded(percentile(values, 0.99) * 1e3),
        "max": rounded(max(values) * 1e3),
        "mean": rounded(sum(values) / len(values) * 1e3),
    }


def summarise_level(
    concurrency: int, per_round: int, samples: Sequence[AcmeRound]
) -> dict[str, Any]:
    results = [r for s in samples for r in s.results]
    errors = [e for s in samples for e in s.errors]
    ok = len(results)
    elapsed = sum(s.elapsed for s in samples)
    rates = [s.rate for s in samples]
    level: dict[str, Any] = {
        "concurrency": concurrency,
        "rounds": len(samples),
        "orders": per_round * len(samples),
        "ok": ok,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "timed_out": any(s.timed_out for s in samples),
        "elapsed_s": rounded(elapsed),
        "orders_per_s": rounded(median(rates), 2) if ok else 0.0,
        "per_round": spread(rates),
    }
    retry_after: dict[str, set[str]] = {}
    for sample in samples:
        for step, values in sample.retry_after.items():
            retry_after.setdefault(step, set()).update(values)
    level["retry_after_seen"] = {step: sorted(v) for step, v in sorted(retry_after.items())}
    accounts = [x for s in samples for x in s.account_seconds]
    if accounts:
        level["new_account_ms"] = {
            "p50": rounded(percentile(accounts, 0.5) * 1e3),
            "max": rounded(max(accounts) * 1e3),
            "count": len(accounts),
        }
    if not ok:
        return level
    latency = _ms([r.total for r in results])
    level["latency_ms"] = latency
    level["p99_over_p50"] = rounded(latency["p99"] / latency["p50"], 3) if latency["p50"] else None
    level["steps_mean_ms"] = {
        step: rounded(sum(r.seconds[step] for r in results) / ok * 1e3) for step in STEPS
    }
    level["polls_per_order"] = {
        "authorization": rounded(sum(r.authorization_polls for r in results) / ok, 3),
        "order": rounded(sum(r.order_polls for r in results) / ok, 3),
    }
    level["requests_per_order"] = rounded(5 + sum(r.polls for r in results) / ok, 3)
    # Token fetches by the server's validator per order (all rounds; an order that failed
    # may have been fetched too, so this is an upper bound when there were errors).
    level["validator_fetches_per_order"] = rounded(sum(s.fetches for s in samples) / ok, 3)
    level["nonce_retries"] = sum(r.nonce_retries for r in results)
    server_cpu = [s.server_cpu_s for s in samples]
    if all(c is not None for c in server_cpu):
        used = sum(c for c in server_cpu if c is not None)
        level["server_cpu_ms_per_order"] = rounded(used / ok * 1e3)
        level["server_cpu_cores"] = rounded(used / elapsed)
    dns_cpu = [s.dns_cpu_s for s in samples]
    if all(c is not None for c in dns_cpu):
        level["dns_cpu_ms_per_order"] = rounded(sum(c for c in dns_cpu if c is not None) / ok * 1e3)
    client_cpu = sum(s.client_cpu_s for s in samples)
    level["client_cpu_ms_per_order"] = rounded(client_cpu / ok * 1e3)
    level["client_cpu_cores"] = rounded(client_cpu / elapsed)
    return level


def _issuer_key(chain_pem: bytes) -> str | None:
    """What signed the leaf (the server's issuing key), e.g. ``EC secp256r1`` or ``RSA-2048``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        issuer = x509.load_pem_x509_certificates(chain_pem)[1].public_key()
    except (ValueError, IndexError):
        return None
    if isinstance(issuer, ec.EllipticCurvePublicKey):
        return f"EC {issuer.curve.name}"
    if isinstance(issuer, rsa.RSAPublicKey):
        return f"RSA-{issuer.key_size}"
    return type(issuer).__name__


async def _probe_issuer(
    target: AcmeTarget, plan: OrderPlan, responder: Http01Responder
) -> str | None:
    """One untimed order, to read the issuer's key type and prove the whole path works."""
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve)
        client = await _open_client(target)
        try:
            await client.new_account()
            result = await client.complete_order(plan, responder)
            check_chain(plan, result.chain_pem)
        finally:
            await client.connection.aclose()
        nursery.cancel_scope.cancel()
    return _issuer_key(result.chain_pem)


def _ratios(servers: dict[str, dict[str, Any]], pebble_label: str) -> dict[str, Any]:
    pebble = servers.get(pebble_label)
    out: dict[str, Any] = {}
    if not pebble:
        return out
    pebble_levels = {level["concurrency"]: level for level in pebble["levels"]}
    pebble_best = (pebble.get("best") or {}).get("orders_per_s")
    for server in servers.values():
        if server["kind"] != "devid":
            continue
        by_level: dict[str, float | None] = {}
        for level in server["levels"]:
            theirs = pebble_levels.get(level["concurrency"], {}).get("orders_per_s")
            by_level[str(level["concurrency"])] = (
                rounded(float(level["orders_per_s"]) / float(theirs), 3) if theirs else None
            )
        best = (server.get("best") or {}).get("orders_per_s")
        out[server["host"]] = {
            "by_concurrency": by_level,
            "best": rounded(float(best) / float(pebble_best), 3) if best and pebble_best else None,
        }
    return out


def run_acme(params: AcmeParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    """Start pebble, every devid host, the DNS server and the responder; time interleaved
    rounds of complete orders; stop everything."""
    reason = pebble_missing()
    if reason is not None:
        raise SectionSkipped(reason)
    pinning = Pinning.choose(params.pin)
    base = work_dir / "acme"
    base.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    labels = [f"devid-{host}" for host in params.hosts] + ["pebble"]
    total = params.orders_per_server() * len(labels) + len(labels)
    progress(f"acme: preparing {total} P-256 keys and CSRs for {run_id}.{DOMAIN}")
    plans = make_order_plans(total, "o", f"{run_id}.{DOMAIN}")
    probes, plans = plans[: len(labels)], plans[len(labels) :]
    sock = bind_responder_socket(LOOPBACK)
    responder = Http01Responder(sock)
    dns: ChildProcess | None = None
    devid_servers: list[tuple[str, ServerProcess, Path, float]] = []
    pebble: PebbleProcess | None = None
    targets: list[AcmeTarget] = []
    statuses: dict[str, Any] = {}
    issuer_keys: dict[str, str | None] = {}
    try:
        dns, dns_port = start_dns(base, pinning.server, params.startup_timeout_s)
        progress(
            f"acme: pebble-challtestsrv pid {dns.pid} serving DNS on {LOOPBACK}:{dns_port};"
            f" http-01 responder on {LOOPBACK}:{responder.port}"
        )
        for host in params.hosts:
            started = time.perf_counter()
            server, root = _devid_server(
                host, base, responder.port, dns_port, pinning.server, progress
            )
            devid_servers.append((host, server, root, started))
        started = time.perf_counter()
        pebble = PebbleProcess(base / "pebble", responder.port, dns_port, pinning.server)
        for host, server, root, t0 in devid_servers:
            url = server.wait_ready(root, params.startup_timeout_s)
            targets.append(
                AcmeTarget(
                    f"devid-{host}",
                    "devid",
                    server,
                    f"{url}{DIRECTORY_PATH}",
                    root,
                    time.perf_counter() - t0,
                    server.memory(),
                )
            )
        directory = pebble.wait_ready(params.startup_timeout_s)
        targets.append(
            AcmeTarget(
                "pebble",
                "pebble",
                pebble,
                directory,
                pebble.root,
                time.perf_counter() - started,
                pebble.memory(),
            )
        )
        for target in targets:
            progress(
                f"acme {target.label}: pid {target.server.pid} ready at {target.directory_url}"
                f" after {target.startup_s:.1f} s"
            )
        with client_affinity(pinning.client):
            for target, probe in zip(targets, probes, strict=True):
                issuer_keys[target.label] = trio.run(_probe_issuer, target, probe, responder)
            progress(
                "acme: one untimed order through every server; issuers: "
                + ", ".join(f"{k} {v}" for k, v in issuer_keys.items())
            )
            samples = trio.run(_interleaved, params, targets, plans, responder, dns, progress)
        peaks = {t.label: t.server.memory() for t in targets}
    except (AcmeFailure, ExceptionGroup) as exc:
        leaf = first_error(exc)
        if not isinstance(leaf, BenchmarkError | ConnectionBroken | OSError | trio.TooSlowError):
            raise
        raise BenchmarkError(f"acme: {leaf}") from None
    finally:
        for target_host, server, _, _ in devid_servers:
            with suppress(Exception):
                statuses[f"devid-{target_host}"] = server.stop()
        if pebble is not None:
            with suppress(Exception):
                statuses["pebble"] = pebble.stop()
        if dns is not None:
            with suppress(Exception):
                statuses["dns"] = dns.stop()
        sock.close()
        progress(f"acme: servers stopped (exit status {statuses})")
    servers: dict[str, dict[str, Any]] = {}
    for target in targets:
        levels = [
            summarise_level(c, n, samples[target.label][c])
            for c, n in zip(params.concurrency, params.orders, strict=True)
        ]
        ok = [level for level in levels if level["ok"]]
        best = max(ok, key=lambda level: float(level["orders_per_s"])) if ok else None
        peak = peaks[target.label]
        servers[target.label] = {
            "label": target.label,
            "kind": target.kind,
            "host": target.label.removeprefix("devid-") if target.kind == "devid" else None,
            "issuer_key": issuer_keys.get(target.label),
            "directory": target.directory_url,
            "levels": levels,
            "best": (
                {
                    "concurrency": best["concurrency"],
                    "orders_per_s": best["orders_per_s"],
                    "latency_ms": best.get("latency_ms"),
                }
                if best
                else None
            ),
            "server": {
                "command": target.server.command,
                "pid": target.server.pid,
                "startup_s": rounded(target.startup_s),
                "idle_rss_kib": target.idle_memory.total("VmRSS"),
                "peak_rss_kib": peak.total("VmHWM"),
                "exit_status": statuses.get(target.label),
            },
        }
    pebble_info = servers.get("pebble", {})
    pebble_info["environment"] = PEBBLE_ENV
    if pebble is not None:
        pebble_info["config"] = pebble.config
    ratios = _ratios(servers, "pebble")
    headline_host = "raw" if "raw" in ratios else next(iter(ratios), None)
    result: dict[str, Any] = {
        "parameters": {**params.describe(), "pinning": pinning.describe()},
        "setup": {
            "pebble_version": pebble_version(),
            "dns": "pebble-challtestsrv: A -> 127.0.0.1 for every name, no AAAA",
            "responder": f"benchmarks.acme_client.Http01Responder on {LOOPBACK} (in the client"
            " process, on the client's CPU)",
            "domain": f"{run_id}.{DOMAIN}",
            "dns_pid": dns.pid if dns is not None else None,
            "dns_exit_status": statuses.get("dns"),
            "responder_served": responder.served,
            "responder_refused": responder.refused,
        },
        "servers_by_label": servers,
        "servers": [asdict_figures(server) for server in servers.values()],
        "ratios": ratios,
        "ratio_host": headline_host,
        "ratio_devid_to_pebble": (ratios.get(headline_host) or {}).get("best")
        if headline_host
        else None,
    }
    return result


def asdict_figures(server: dict[str, Any]) -> dict[str, Any]:
    """The flat :class:`ServerFigures` of a server (its best level) for the report."""
    best = server.get("best") or {}
    level = next(
        (lv for lv in server["levels"] if lv["concurrency"] == best.get("concurrency")),
        server["levels"][-1],
    )
    latency = level.get("latency_ms") or {}
    figures = ServerFigures(
        server=server["label"],
        orders_per_s=float(level.get("orders_per_s") or 0.0),
        p50_ms=float(latency.get("p50") or 0.0),
        p99_ms=float(latency.get("p99") or 0.0),
        orders=int(level["ok"]),
        errors=int(level["errors"]),
        server_cpu_ms_per_order=level.get("server_cpu_ms_per_order"),
        peak_rss_kib=server["server"].get("peak_rss_kib"),
    )
    return {**asdict(figures), "concurrency": level["concurrency"]}
