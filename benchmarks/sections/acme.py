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
  ``ratio_devid_to_pebble`` is the raw host's best ÷ best (``ratio_host``);
- ``server_cpu``: server CPU per order devid ÷ pebble per host and level
  (``by_host``), and the headline ``ratio_devid_to_pebble``: the raw host's at the
  highest level both ran (``concurrency``);
- ``crypto``: the public-key operations of one order timed with cryptography alone
  in this run (``units``: an ES256 verification, the CSR's check, a certificate
  signature per issuer key type), per server what one order needs of them (a
  verification per request at its measured requests per order, the CSR, one
  signature: ``ms_per_order``) beside its server CPU per order at its highest level
  (``crypto_to_cpu``); the top-level ``ms_per_order`` and ``crypto_to_cpu`` are the
  raw host's;
- ``servers_by_label[...]["step_cpu"]``: after the rounds, ``step_orders`` orders
  one at a time per server with the server's CPU (every thread's, from
  ``/proc/PID/task/*/schedstat``) read at each step boundary: ``ms_per_step``,
  ``whole_ms``, and the wall time per step. Work a server does after answering (the
  validation it starts when the challenge is answered) counts in the step it runs
  in: mostly ``validation``.
"""

from __future__ import annotations

import argparse
import functools
import os
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from engine.keys import KeyType
from hosts.testing.challtestsrv import ChallTestSrv, ChallTestSrvError, start_challtestsrv
from hosts.testing.ports import LOOPBACK
from hosts.testing.servers import HOSTS

from ..acme_client import (
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
from ..common import (
    BenchmarkError,
    Progress,
    SectionSkipped,
    create_ca,
    median,
    percentile,
    rounded,
    spread,
)
from ..common import write_password_file as _write_password_file
from ..loadgen import Connection, ConnectionBroken
from ..pebble import PEBBLE_ENV, PebbleProcess, pebble_missing, pebble_version
from ..procs import TreeMemory
from ..rounds import Meter, latency_figures, schedule
from ..servers import Pinning, ServerProcess, client_affinity
from . import (
    RunContext,
    add_count_option,
    add_hosts_option,
    add_levels_option,
    requests_for,
)

#: The default ACME provisioner a new devid CA gets (hosts.core.init.ACME_PROVISIONER).
ACME_PROVISIONER = "acme"
#: Where devid serves that provisioner's directory (engine.acme.resources).
DIRECTORY_PATH = f"/acme/{ACME_PROVISIONER}/directory"
DOMAIN = "acme-bench.test"
DEFAULT_HOSTS = HOSTS
DEFAULT_CONCURRENCY = (1, 8)

NAME = "acme"
SIZE_OPTIONS = ("acme_orders", "acme_concurrency")

SUMMARY = """\
  acme         complete ACME orders (account, order, authorization, http-01 challenge
               validated for real, finalize, download) against `devid serve` (quart
               and raw hosts) and Debian's pebble (PEBBLE_VA_NOSLEEP=1), side by side:
               one client, one local http-01 responder, one mock DNS
               (pebble-challtestsrv), servers and levels interleaved round by round.
"""
FIGURES = """\
  acme (one row per server and concurrency level)
    orders/s     complete orders per second (median round): newOrder, authorization,
                 http-01 challenge, validation (the server fetches the token from the
                 shared responder), finalize with a fresh CSR, certificate download;
                 the chain is checked. Accounts are made per connection, untimed.
    p50/p99 ms   latency of one whole order, all rounds pooled.
    server CPU ms/order, server cores
                 CPU of the devid or pebble process per order and per second (the mock
                 DNS server's CPU is in the JSON).
    client CPU ms/order
                 this process: the ACME client and the http-01 responder.
    polls/order  authorization and order POST-as-GETs until valid: the client ignores
                 Retry-After and polls every server on one schedule (at once after the
                 responder served the token, then 2, 4, 8 ... ms, at most 50 ms).
    ÷ pebble     devid's orders/s ÷ pebble's at the same concurrency; the headline
                 divides each one's best level (the issue's target: >= 2).
    step ms      mean ms per step of an order (newOrder, authorization, challenge,
                 validation, finalize, download) at the highest level.
"""


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
    #: Orders per server, one at a time, whose server CPU is split by step (after the rounds).
    step_orders: int = 40

    def __post_init__(self) -> None:
        if len(self.orders) != len(self.concurrency):
            raise ValueError("one order count per concurrency level")
        if self.rounds < 1 or any(c < 1 for c in self.concurrency + self.orders):
            raise ValueError("concurrency levels, order counts and rounds must be positive")
        if not self.hosts:
            raise ValueError("at least one devid host")
        if self.step_orders < 0:
            raise ValueError("step_orders must not be negative")

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
            "step_cpu_orders": self.step_orders,
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
    dns: ChallTestSrv,
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
        served = responder.served
        meter = Meter(target.server, {"dns": dns.pid})
        meter.start()
        with trio.move_on_after(params.round_timeout_s) as scope:
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(worker, client)
        usage = meter.stop()
        fetches = responder.served - served
    finally:
        for client in clients:
            await client.connection.aclose()
    retry_after: dict[str, set[str]] = {}
    for client in clients:
        for step, values in client.retry_after.items():
            retry_after.setdefault(step, set()).update(values)
    try:
        target.server.check_alive()
    except BenchmarkError as exc:
        raise BenchmarkError(f"{label}: {exc}") from None
    sample = AcmeRound(
        results=results,
        errors=errors,
        elapsed=usage.elapsed,
        timed_out=scope.cancelled_caught,
        account_seconds=account_seconds,
        server_cpu_s=usage.server_cpu_s,
        dns_cpu_s=usage.others_cpu_s["dns"],
        client_cpu_s=usage.client_cpu_s,
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
    dns: ChallTestSrv,
    progress: Progress,
) -> dict[str, dict[int, list[AcmeRound]]]:
    samples: dict[str, dict[int, list[AcmeRound]]] = {
        t.label: {c: [] for c in params.concurrency} for t in targets
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve)
        offset = 0
        levels = list(zip(params.concurrency, params.orders, strict=True))
        for round_number, target, (concurrency, count) in schedule(params.rounds, targets, levels):
            warm_count = concurrency * params.warmup_per_connection
            warm = plans[offset : offset + warm_count]
            timed = plans[offset + warm_count : offset + warm_count + count]
            offset += warm_count + count
            label = f"acme {target.label} c={concurrency} round {round_number}/{params.rounds}"
            samples[target.label][concurrency].append(
                await one_round(
                    params, target, concurrency, warm, timed, responder, dns, label, progress
                )
            )
        nursery.cancel_scope.cancel()
    return samples


# --- summaries ----------------------------------------------------------------------------


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
    latency = latency_figures([r.total for r in results])
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
    split = params.step_orders + 1 if params.step_orders else 0  # one untimed warm-up
    total = (params.orders_per_server() + split) * len(labels) + len(labels)
    progress(f"acme: preparing {total} P-256 keys and CSRs for {run_id}.{DOMAIN}")
    plans = make_order_plans(total, "o", f"{run_id}.{DOMAIN}")
    probes, plans = plans[: len(labels)], plans[len(labels) :]
    sock = bind_responder_socket(LOOPBACK)
    responder = Http01Responder(sock)
    dns: ChallTestSrv | None = None
    devid_servers: list[tuple[str, ServerProcess, Path, float]] = []
    pebble: PebbleProcess | None = None
    targets: list[AcmeTarget] = []
    statuses: dict[str, Any] = {}
    issuer_keys: dict[str, str | None] = {}
    step_cpu: dict[str, dict[str, Any]] = {}
    try:
        try:
            dns = start_challtestsrv(base, cpus=pinning.server, timeout=params.startup_timeout_s)
        except ChallTestSrvError as exc:
            raise BenchmarkError(str(exc)) from None
        dns_port = dns.dns_port
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
            timed_plans = len(plans) - split * len(labels)
            samples = trio.run(
                _interleaved, params, targets, plans[:timed_plans], responder, dns, progress
            )
            for index, target in enumerate(targets):
                if not params.step_orders:
                    break
                start = timed_plans + index * split
                step_cpu[target.label] = trio.run(
                    _step_split, target, plans[start : start + split], responder, progress
                )
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
            "step_cpu": step_cpu.get(target.label),
        }
    pebble_info = servers.get("pebble", {})
    pebble_info["environment"] = PEBBLE_ENV
    if pebble is not None:
        pebble_info["config"] = pebble.config
    ratios = _ratios(servers, "pebble")
    headline_host = "raw" if "raw" in ratios else next(iter(ratios), None)
    progress("acme: timing the public-key operations of an order with cryptography alone")
    crypto = crypto_per_order(servers, plans[0].csr_der if plans else probes[0].csr_der)
    server_cpu = _server_cpu_ratios(servers, "pebble", headline_host)
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
        "server_cpu": server_cpu,
        "crypto": crypto,
    }
    return result


# --- server CPU per step, and the crypto an order needs ---------------------------------------


def task_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of *pid* so far, in nanoseconds' resolution
    (``/proc/PID/task/*/schedstat``; a thread that ended is no longer counted)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


async def _step_split(
    target: AcmeTarget, plans: Sequence[OrderPlan], responder: Http01Responder, progress: Progress
) -> dict[str, Any]:
    """One account, one untimed order, then *plans* one at a time with the server's CPU
    read at every step boundary: the server CPU of each step of an order, alone."""
    pid = target.server.pid
    results: list[OrderResult] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve)
        client = await _open_client(target)
        try:
            await client.new_account()
            await client.complete_order(plans[0], responder)
            for plan in plans[1:]:
                result = await client.complete_order(
                    plan, responder, server_cpu=lambda: task_cpu_seconds(pid)
                )
                check_chain(plan, result.chain_pem)
                results.append(result)
        finally:
            await client.connection.aclose()
        nursery.cancel_scope.cancel()
    ok = len(results)
    ms = {step: rounded(sum(r.server_cpu_s[step] for r in results) / ok * 1e3, 3) for step in STEPS}
    split = {
        "orders": ok,
        "concurrency": 1,
        "ms_per_step": ms,
        "whole_ms": rounded(sum(sum(r.server_cpu_s.values()) for r in results) / ok * 1e3, 3),
        "wall_ms_per_step": {
            step: rounded(sum(r.seconds[step] for r in results) / ok * 1e3, 3) for step in STEPS
        },
        "requests_per_order": rounded(5 + sum(r.polls for r in results) / ok, 3),
    }
    progress(
        f"acme {target.label}: server CPU per step, {ok} orders one at a time: "
        + ", ".join(f"{step} {value:.2f}" for step, value in ms.items())
        + f" ms (whole {split['whole_ms']:.2f} ms)"
    )
    return split


def _per_op_us(operation: Callable[[], object], seconds: float = 0.2) -> float:
    """CPU microseconds of one call of *operation* (repeated for about *seconds* of CPU)."""
    operation()
    count = 0
    started = time.process_time()
    while True:
        operation()
        count += 1
        used = time.process_time() - started
        if used >= seconds and count >= 20:
            return used / count * 1e6


def crypto_unit_costs(csr_der: bytes, issuer_keys: Sequence[str | None]) -> dict[str, Any]:
    """The public-key operations of one order, each timed with cryptography alone: an
    ES256 JWS verification (every request is one), the CSR's signature check (with its
    parsing), and a certificate signature by each issuer key type named."""
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    account = ec.generate_private_key(ec.SECP256R1())
    signing_input = b"x" * 420  # about a kid-signed ACME request's protected.payload
    signature = account.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    public = account.public_key()
    tbs = b"t" * 450  # about the to-be-signed part of a P-256 leaf certificate
    units: dict[str, Any] = {
        "es256_verify_us": rounded(
            _per_op_us(lambda: public.verify(signature, signing_input, ec.ECDSA(hashes.SHA256())))
        ),
        "csr_verify_us": rounded(
            _per_op_us(lambda: x509.load_der_x509_csr(csr_der).is_signature_valid)
        ),
        "sign_us": {},
    }
    for name in dict.fromkeys(k for k in issuer_keys if k):
        sign: Callable[[], object] | None = None
        if name.startswith("EC "):
            curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}.get(name[3:])
            if curve is not None:
                algorithm = ec.ECDSA(hashes.SHA384() if name.endswith("384r1") else hashes.SHA256())
                ec_key = ec.generate_private_key(curve)
                sign = functools.partial(ec_key.sign, tbs, algorithm)
        elif name.startswith("RSA-"):
            rsa_key = rsa.generate_private_key(65537, int(name[4:]))
            sign = functools.partial(rsa_key.sign, tbs, padding.PKCS1v15(), hashes.SHA256())
        if sign is not None:
            units["sign_us"][name] = rounded(_per_op_us(sign))
    return units


def crypto_per_order(servers: dict[str, dict[str, Any]], csr_der: bytes) -> dict[str, Any]:
    """The crypto-only cost of one order on each server (its JWS verifications at its
    measured requests per order, the CSR check, one signature by its issuer key) beside
    its server CPU per order at its highest level; ``ms_per_order`` is the raw host's."""
    units = crypto_unit_costs(csr_der, [s.get("issuer_key") for s in servers.values()])
    by_server: dict[str, Any] = {}
    for label, server in servers.items():
        levels = [lv for lv in server["levels"] if lv.get("ok")]
        sign = units["sign_us"].get(server.get("issuer_key") or "")
        if not levels or sign is None:
            continue
        level = max(levels, key=lambda lv: int(lv["concurrency"]))
        requests = float(level.get("requests_per_order") or 6.0)
        crypto_ms = (requests * units["es256_verify_us"] + units["csr_verify_us"] + sign) / 1e3
        cpu = level.get("server_cpu_ms_per_order")
        by_server[label] = {
            "concurrency": level["concurrency"],
            "verifications_per_order": requests,
            "issuer_key": server.get("issuer_key"),
            "ms_per_order": rounded(crypto_ms, 3),
            "server_cpu_ms_per_order": cpu,
            "crypto_to_cpu": rounded(crypto_ms / float(cpu), 3) if cpu else None,
        }
    raw: dict[str, Any] = by_server.get("devid-raw") or next(
        (v for k, v in by_server.items() if k.startswith("devid-")), {}
    )
    return {
        "units": units,
        "by_server": by_server,
        "ms_per_order": raw.get("ms_per_order"),
        "crypto_to_cpu": raw.get("crypto_to_cpu"),
    }


def _server_cpu_ratios(
    servers: dict[str, dict[str, Any]], pebble_label: str, headline_host: str | None
) -> dict[str, Any]:
    """Server CPU per order, devid ÷ pebble, at every level both ran; the headline is the
    raw host's at the highest such level (each server at its busiest)."""
    pebble = servers.get(pebble_label)
    if not pebble:
        return {}
    theirs = {lv["concurrency"]: lv.get("server_cpu_ms_per_order") for lv in pebble["levels"]}
    by_host: dict[str, dict[str, float]] = {}
    for server in servers.values():
        if server["kind"] != "devid":
            continue
        ratios: dict[str, float] = {}
        for level in server["levels"]:
            ours, base = level.get("server_cpu_ms_per_order"), theirs.get(level["concurrency"])
            if isinstance(ours, int | float) and isinstance(base, int | float) and base > 0:
                ratios[str(level["concurrency"])] = rounded(ours / base, 3)
        by_host[server["host"]] = ratios
    headline = by_host.get(headline_host or "") or {}
    top = max(headline, key=int) if headline else None
    return {
        "by_host": by_host,
        "concurrency": int(top) if top else None,
        "ratio_devid_to_pebble": headline.get(top) if top else None,
    }


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


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("acme")
    add_levels_option(
        group,
        "--acme-concurrency",
        DEFAULT_CONCURRENCY,
        "acme: concurrency levels (connections, one order in flight each; default 1,8)",
    )
    add_count_option(
        group,
        "--acme-orders",
        "acme: timed orders per server, level and round (default 40/200 for 1/8; quick 8/24)",
    )
    add_hosts_option(
        group,
        "--acme-host",
        DEFAULT_HOSTS,
        "acme: a devid host measured against pebble (repeatable; default quart and raw)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    params = AcmeParams(
        concurrency=tuple(options.acme_concurrency),
        orders=tuple(
            requests_for(
                context.sizes["acme_orders"], options.acme_concurrency, options.acme_orders
            )
        ),
        rounds=context.size("rounds", "rounds"),
        hosts=tuple(dict.fromkeys(options.acme_host or DEFAULT_HOSTS)),
        pin=not options.no_pin,
    )
    # The per-step split: as many orders as the first level's round, 4 to 40.
    params = replace(params, step_orders=min(40, max(4, params.orders[0])))
    return run_acme(params, context.work_dir, context.progress)
