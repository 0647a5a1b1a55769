"""A fleet: N simulated devices, each through the whole product flow, against one server.

One ``devid serve --host raw`` (a fresh P-256 CA, the default SQLite store at
``synchronous=full``, started like every other section's server) trusts a fake
TPM vendor's EK root the way an operator does (``DATA/ek-roots/``), and two
accounts are created through the admin API, a Wi-Fi and a VPN one, given to
every device by the fleet's tag. Then every device goes through the flow
(:mod:`benchmarks.fleet_device`):

1. ``register``: the operator adds it to the inventory (``POST /api/v1/devices``);
   reported on its own, apart from the device's flow;
2. ``enrol``: AK enrolment, ``POST /attest`` and ``POST /secret``;
3. ``order``: its device certificate through ACME device-attest-01 (``/acme/devices``);
4. ``accounts``: its account listing and the Wi-Fi and VPN certificates (X5C
   tokens the device key signs);
5. ``renew``: one renewal of each of its three certificates over mutual TLS.

The software device stands in for the TPM (evidence made in software, before
the clock starts where it can), so the server is what is measured. The fleet
moves through the flow one step at a time: every device registers, then every
device enrols its AK, then every device orders, and so on; each device's steps
come in the product's order and build on its earlier ones. That way the
server's CPU (user + system time of its process, from /proc, the load
generator's left out) is read around each step and divided by the devices that
did it, with no guessing at how overlapping steps share it. ``concurrency``
devices are in flight at once (trio tasks, 8 by default), each on connections
of its own as the agent opens them (one per exchange; one per renewal, whose
client certificate is the credential). The server runs on the first CPU and
the load generator on the second when there are two (``--no-pin``: anywhere).

Between steps, with the server idle, the database is checkpointed
(``PRAGMA wal_checkpoint(TRUNCATE)`` from this process) and its size read:
bytes per device per step, and at the end per table (SQLite's ``dbstat``).
Last, for the CRL figures: ``revoke_devices`` devices are disabled through the
admin API (which revokes every certificate they hold) and the CRLs fetched
before and after give the bytes of one CRL entry and the entries a revoked
device adds to each CRL. The estimate for larger fleets is computed from these
figures by the report (:mod:`benchmarks.report.fleet`).

Everything listens on 127.0.0.1; the server is always stopped.
"""

from __future__ import annotations

import argparse
import sqlite3
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from cryptography import x509

from engine.keys import KeyType
from hosts.testing.servers import HEALTH_PATH

from ..common import BenchmarkError, Progress, create_ca, percentile, rounded, write_password_file
from ..fleet_device import (
    ACCOUNT_NAMES,
    ACCOUNTS,
    ACCOUNTS_API,
    DEVICE_CERTIFICATE,
    DEVICES_API,
    FleetDevice,
    FleetFailure,
    Server,
    prepare,
    request_json,
)
from ..loadgen import Connection, ConnectionBroken
from ..rounds import Meter
from ..servers import Pinning, ServerProcess, client_affinity
from . import RunContext, parse_positive

NAME = "fleet"
SIZE_OPTIONS = ("fleet", "fleet_concurrency")

SUMMARY = """\
  fleet        N simulated devices (software evidence standing in for the TPM) through
               the whole product flow against one `devid serve --host raw`: inventory,
               AK enrolment, device-attest-01 order, Wi-Fi and VPN account
               certificates, a renewal of each certificate; server CPU and database
               bytes per device and step, and an estimate for 10k to 1M devices.
"""
FIGURES = """\
  fleet (a table per step of the flow, then the estimate)
    devices/s    devices through the flow (enrolment to renewals) per second of wall
                 time; the fleet moves one step at a time, --fleet-concurrency devices
                 in flight, each on connections of its own.
    server CPU ms/device
                 user + system time of the server process over a step, divided by the
                 devices that did it; the TLS handshakes of the step's connections are
                 in it. The flow's total leaves the inventory registration out.
    µs/operation, connections apart
                 the step's server CPU ÷ its operations (1 enrolment, 1 order, 2 account
                 certificates, 3 renewals), and the same less its new connections' cost,
                 measured on its own (new TLS and mTLS connections with GET /health).
    p50/p99 ms   wall latency of each request (the renewals: mTLS handshake + request).
    DB bytes/device
                 growth of the SQLite file over the step after a TRUNCATE checkpoint
                 (so the WAL is empty), divided by the devices.
    estimate     on paper, from the measured per-device figures: cores, database and
                 CRL sizes for 10k, 100k and 1M devices renewing daily (assumptions in
                 the table's notes).
"""

HOST = "raw"
DEFAULT_CONCURRENCY = 8
#: The steps of a device's flow after its registration, in order.
FLOW = ("enrol", "order", "accounts", "renew")
PHASES = ("register", *FLOW)
#: What a step does once per device, for the CPU per operation (and how many).
OPERATIONS: dict[str, tuple[str, int]] = {
    "register": ("registration", 1),
    "enrol": ("AK enrolment", 1),
    "order": ("device-attest-01 order", 1),
    "accounts": ("account certificate", len(ACCOUNT_NAMES)),
    "renew": ("renewal", 1 + len(ACCOUNT_NAMES)),
}
#: New connections a device opens in each step, by kind ("tls", or "mtls" with a client
#: certificate): the registrations share the admin's connections.
CONNECTIONS: dict[str, dict[str, int]] = {
    "register": {},
    "enrol": {"tls": 1},
    "order": {"tls": 1},
    "accounts": {"tls": 1},
    "renew": {"mtls": 1 + len(ACCOUNT_NAMES)},
}
#: The CRLs the figures read: the Agent CA's (device certificates), the Account CA's and
#: the Attestation CA's (AK certificates).
CRLS = ("agent", "account", "attestation")
#: The CRL whose serving cost is timed (the one a revoked device adds most entries to).
CRL_TIMED = "account"
#: The certificates each CRL lists (the lifetimes :func:`_lifetimes` reads).
CRL_CERTIFICATES: dict[str, tuple[str, ...]] = {
    "agent": (DEVICE_CERTIFICATE,),
    "account": ACCOUNT_NAMES,
    "attestation": ("ak",),
}
DB_PATH = Path("db") / "devid.sqlite"
#: Steps over at least this many devices print a progress line at each quarter.
PROGRESS_FROM = 100


@dataclass(frozen=True)
class FleetParams:
    devices: int = 10_000
    concurrency: int = DEFAULT_CONCURRENCY
    pin: bool = True
    #: Devices disabled at the end for the CRL figures (at most all of them).
    revoke_devices: int = 100
    #: New connections (each kind) timed apart for the server's CPU per handshake.
    handshakes: int = 1000
    #: CRL requests timed before and after the devices are disabled.
    crl_fetches: int = 50
    startup_timeout_s: float = 60.0
    #: One device's step must finish within this.
    step_timeout_s: float = 60.0
    #: A step stops taking new devices after this many failures.
    max_errors: int = 10

    def __post_init__(self) -> None:
        if self.devices < 1 or self.concurrency < 1 or self.revoke_devices < 0:
            raise ValueError("the fleet needs at least one device and one connection")

    def describe(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "concurrency": self.concurrency,
            "host": HOST,
            "store": "SQLite, synchronous=full (devid init's default)",
            "ek": "ECC P-256, certified by a fake TPM vendor whose root is in DATA/ek-roots",
            "ak": "ECC P-256; device and account keys P-256 (software keys for TPM keys)",
            "accounts": [str(a["name"]) for a in ACCOUNTS],
            "phases": list(PHASES),
            "flow": "the fleet moves one step at a time; each device's steps in order",
            "connections": "a new TLS connection per exchange as the agent opens them:"
            " enrolment, order, accounts (listing and both certificates), and one mTLS"
            " connection per renewal; registrations share one admin connection per slot",
            "revoked_devices_for_crl": min(self.revoke_devices, self.devices),
            "handshake_connections": min(self.handshakes, self.devices),
            "crl_fetches": self.crl_fetches,
            "step_timeout_s": self.step_timeout_s,
        }


# --- the database ------------------------------------------------------------------------


def database_size(path: Path) -> dict[str, int]:
    """The SQLite file and its WAL after a TRUNCATE checkpoint from this process (the
    server idle: it leaves the WAL empty unless a reader holds it)."""
    connection = sqlite3.connect(path, timeout=10.0)
    try:
        busy = 1
        for _ in range(20):
            busy = int(connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
            if not busy:
                break
            time.sleep(0.05)
    finally:
        connection.close()
    wal = path.with_name(path.name + "-wal")
    return {
        "db_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "checkpoint_busy": busy,
    }


def table_sizes(path: Path) -> list[dict[str, Any]] | None:
    """Bytes of every table and index (SQLite's dbstat), largest first; None without dbstat."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = connection.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        connection.close()
    return [{"name": str(name), "bytes": int(size)} for name, size in rows]


# --- running a step over the fleet --------------------------------------------------------


@dataclass
class StepOutcome:
    phase: str
    done: list[FleetDevice]
    seconds: list[dict[str, float]]
    errors: list[str]
    elapsed: float
    server_cpu_s: float | None
    client_cpu_s: float
    timed_out: bool


Action = Callable[[int, FleetDevice, dict[str, float]], Awaitable[None]]


async def run_step(
    phase: str,
    devices: Sequence[FleetDevice],
    action: Action,
    server: ServerProcess,
    params: FleetParams,
    progress: Progress,
) -> StepOutcome:
    """*action* for every device, ``params.concurrency`` at a time (the slot is the
    worker's number); the server's CPU is read around the whole step."""
    done: list[FleetDevice] = []
    seconds: list[dict[str, float]] = []
    errors: list[str] = []
    next_index = 0
    total = len(devices)
    began = time.perf_counter()

    async def worker(slot: int) -> None:
        nonlocal next_index
        while next_index < total and len(errors) < params.max_errors:
            device = devices[next_index]
            next_index += 1  # no await since the check
            timing: dict[str, float] = {}
            try:
                with trio.fail_after(params.step_timeout_s):
                    await action(slot, device, timing)
            except (FleetFailure, ConnectionBroken, OSError, trio.TooSlowError) as exc:
                errors.append(f"{device.name}: {type(exc).__name__}: {exc}"[:400])
                continue
            done.append(device)
            seconds.append(timing)
            count = len(done) + len(errors)
            progress.status(f"fleet {phase}: {count:,}/{total:,} devices")
            if total >= PROGRESS_FROM and count % (total // 4) == 0 and count < total:
                rate = count / (time.perf_counter() - began)
                progress(f"fleet {phase}: {count:,}/{total:,} devices, {rate:,.1f}/s")

    meter = Meter(server)
    meter.start()
    deadline = max(120.0, params.step_timeout_s * total / params.concurrency)
    with trio.move_on_after(deadline) as scope:
        async with trio.open_nursery() as nursery:
            for slot in range(min(params.concurrency, total)):
                nursery.start_soon(worker, slot)
    usage = meter.stop()
    paired = sorted(zip(done, seconds, strict=True), key=lambda pair: pair[0].index)
    return StepOutcome(
        phase,
        [d for d, _ in paired],
        [s for _, s in paired],
        errors,
        usage.elapsed,
        usage.server_cpu_s,
        usage.client_cpu_s,
        scope.cancelled_caught,
    )


def _step_figures(name: str, values: Sequence[float]) -> dict[str, Any]:
    return {
        "step": name,
        "count": len(values),
        "p50_ms": rounded(percentile(values, 0.5) * 1e3),
        "p99_ms": rounded(percentile(values, 0.99) * 1e3),
        "mean_ms": rounded(sum(values) / len(values) * 1e3),
    }


def summarise_step(outcome: StepOutcome, db_before: int, db_after: int) -> dict[str, Any]:
    ok = len(outcome.done)
    operation, per_device = OPERATIONS[outcome.phase]
    out: dict[str, Any] = {
        "phase": outcome.phase,
        "devices": ok,
        "errors": len(outcome.errors),
        "first_error": outcome.errors[0] if outcome.errors else None,
        "timed_out": outcome.timed_out,
        "elapsed_s": rounded(outcome.elapsed),
        "devices_per_s": rounded(ok / outcome.elapsed, 1) if ok and outcome.elapsed else 0.0,
        "operation": operation,
        "operations_per_device": per_device,
        "db_bytes_after": db_after,
        "db_bytes_per_device": rounded((db_after - db_before) / ok, 1) if ok else None,
        "steps": [],
    }
    if ok:
        names = list(dict.fromkeys(name for timing in outcome.seconds for name in timing))
        out["steps"] = [
            _step_figures(name, [t[name] for t in outcome.seconds if name in t]) for name in names
        ]
        out["client_cpu_ms_per_device"] = rounded(outcome.client_cpu_s / ok * 1e3)
        if outcome.server_cpu_s is not None:
            out["server_cpu_s"] = rounded(outcome.server_cpu_s)
            out["server_cpu_ms_per_device"] = rounded(outcome.server_cpu_s / ok * 1e3)
            out["server_cpu_us_per_operation"] = rounded(
                outcome.server_cpu_s / (ok * per_device) * 1e6, 1
            )
            out["server_cores"] = rounded(outcome.server_cpu_s / outcome.elapsed, 3)
    return out


# --- the run -------------------------------------------------------------------------------


async def _admin_connections(server: Server, count: int) -> list[Connection]:
    return [await server.connect() for _ in range(count)]


async def _crl_sizes(server: Server) -> dict[str, dict[str, int]]:
    """Each CRL's size (DER bytes) and entries, fetched now."""
    connection = await server.connect()
    out: dict[str, dict[str, int]] = {}
    try:
        for issuer in CRLS:
            response = await connection.request("GET", f"/crl/{issuer}")
            if response.status != 200:
                raise FleetFailure(f"GET /crl/{issuer}: HTTP {response.status}")
            crl = x509.load_der_x509_crl(response.body)
            out[issuer] = {"bytes": len(response.body), "entries": len(list(crl))}
    finally:
        await connection.aclose()
    return out


async def _crl_fetches(
    target: Server, server: ServerProcess, issuer: str, fetches: int
) -> dict[str, Any]:
    """The server's CPU per ``GET /crl/ISSUER`` (built again after each revocation,
    served from memory in between), over *fetches* requests one after the other on one
    connection."""
    connection = await target.connect()
    meter = Meter(server)
    try:
        meter.start()
        for _ in range(fetches):
            response = await connection.request("GET", f"/crl/{issuer}")
            if response.status != 200:
                raise FleetFailure(f"GET /crl/{issuer}: HTTP {response.status}")
        usage = meter.stop()
    finally:
        await connection.aclose()
    entries = len(list(x509.load_der_x509_crl(response.body)))
    used = usage.server_cpu_s
    return {
        "issuer": issuer,
        "fetches": fetches,
        "entries": entries,
        "server_cpu_us_per_fetch": rounded(used / fetches * 1e6, 1) if used is not None else None,
    }


def _crl_fetch_cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What serving a CRL costs: a fixed part (the CRL without entries) and a part per entry."""
    base, full = before.get("server_cpu_us_per_fetch"), after.get("server_cpu_us_per_fetch")
    added = after["entries"] - before["entries"]
    out: dict[str, Any] = {"before": before, "after": after}
    if base is not None and full is not None and added > 0:
        out["server_cpu_us_per_fetch_empty"] = base
        out["server_cpu_us_per_entry"] = rounded(max(0.0, full - base) / added, 3)
    return out


def _crl_figures(
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    revoked: int,
    lifetimes: dict[str, float],
) -> dict[str, Any]:
    """What a revoked device adds to each CRL, and how long its entries stay there (the
    longest lifetime of the certificates the CRL lists)."""
    crls: dict[str, Any] = {}
    for issuer in CRLS:
        added = after[issuer]["entries"] - before[issuer]["entries"]
        grown = after[issuer]["bytes"] - before[issuer]["bytes"]
        lives = [
            seconds
            for name, seconds in lifetimes.items()
            if name.removesuffix(" (renewed)") in CRL_CERTIFICATES[issuer]
        ]
        crls[issuer] = {
            "certificates": list(CRL_CERTIFICATES[issuer]),
            "bytes_before": before[issuer]["bytes"],
            "bytes_after": after[issuer]["bytes"],
            "entries_after": after[issuer]["entries"],
            "entries_added": added,
            "bytes_per_entry": rounded(grown / added, 1) if added else None,
            "entries_per_revoked_device": rounded(added / revoked, 2) if revoked else None,
            "lifetime_s": max(lives) if lives else None,
        }
    return {
        "revoked_devices": revoked,
        "reason": "device disabled (privilegeWithdrawn)",
        "crls": crls,
    }


async def _handshakes(
    devices: Sequence[FleetDevice],
    target: Server,
    server: ServerProcess,
    params: FleetParams,
    tls_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """The server's CPU per new connection, apart from any step: ``GET /health`` on a new
    TLS connection, then on a new one presenting the device certificate (mTLS), for up to
    ``params.handshakes`` devices. The steps' CPU less their connections' then estimates
    the CPU of the operations themselves."""
    sample = devices[: params.handshakes]
    contexts: dict[int, ssl.SSLContext] = {}
    for device in sample:
        pem = device.client_pem(DEVICE_CERTIFICATE, tls_dir)
        try:
            contexts[device.index] = target.client_context(pem)
        finally:
            pem.unlink()

    async def health(connection: Connection) -> None:
        try:
            response = await connection.request("GET", HEALTH_PATH)
        finally:
            await connection.aclose()
        if response.status != 200:
            raise FleetFailure(f"GET {HEALTH_PATH}: HTTP {response.status}")

    async def tls(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        started = time.perf_counter()
        await health(await target.connect())
        seconds["TLS connection + GET /health"] = time.perf_counter() - started

    async def mtls(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        started = time.perf_counter()
        await health(await target.connect(contexts[device.index]))
        seconds["mTLS connection + GET /health"] = time.perf_counter() - started

    out: dict[str, Any] = {"connections": len(sample)}
    for kind, action in (("tls", tls), ("mtls", mtls)):
        progress(f"fleet: {len(sample):,} new {kind} connections, each GET {HEALTH_PATH}")
        outcome = await run_step(f"{kind} connections", sample, action, server, params, progress)
        if outcome.errors:
            raise BenchmarkError(f"fleet {kind} connections: {outcome.errors[0]}")
        values = [t for timing in outcome.seconds for t in timing.values()]
        figures: dict[str, Any] = _step_figures(f"{kind} connection + GET /health", values)
        if outcome.server_cpu_s is not None:
            figures["server_cpu_us_per_connection"] = rounded(
                outcome.server_cpu_s / len(outcome.done) * 1e6, 1
            )
        out[kind] = figures
    return out


def _lifetimes(device: FleetDevice) -> dict[str, float]:
    """Seconds from notBefore to notAfter of each certificate one device holds."""

    def life(certificate: x509.Certificate) -> float:
        span = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        return span.total_seconds()

    out = {"ak": life(device.ak_chain[0])}
    for name, chain in device.chains.items():
        out[name] = life(chain[0])
    for name, certificate in device.renewed.items():
        out[f"{name} (renewed)"] = life(certificate)
    return out


async def _drive(
    params: FleetParams,
    devices: list[FleetDevice],
    target: Server,
    server: ServerProcess,
    db_path: Path,
    tls_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    admin_headers = [("authorization", f"Bearer {target.admin_token}")]
    connection = await target.connect()
    try:
        for account in ACCOUNTS:
            await request_json(
                connection,
                "POST",
                ACCOUNTS_API,
                account,
                "POST /api/v1/accounts",
                status=201,
                headers=admin_headers,
            )
    finally:
        await connection.aclose()
    sizes = {"start": database_size(db_path)["db_bytes"]}
    admins = await _admin_connections(target, min(params.concurrency, len(devices)))

    async def register(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        await device.register(admins[slot], target.admin_token, seconds)

    async def enrol(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        await device.enrol(target, seconds)

    async def order(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        await device.order(target, seconds)

    async def accounts(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        await device.accounts(target, seconds)

    async def renew(slot: int, device: FleetDevice, seconds: dict[str, float]) -> None:
        await device.renew(target, tls_dir, seconds)

    actions: dict[str, Action] = {
        "register": register,
        "enrol": enrol,
        "order": order,
        "accounts": accounts,
        "renew": renew,
    }
    phases: list[dict[str, Any]] = []
    remaining = devices
    before = sizes["start"]
    try:
        for phase in PHASES:
            progress(f"fleet {phase}: {len(remaining):,} devices, {params.concurrency} at a time")
            outcome = await run_step(phase, remaining, actions[phase], server, params, progress)
            measured = database_size(db_path)
            after = measured["db_bytes"]
            sizes["wal_after_checkpoint"] = measured["wal_bytes"]
            summary = summarise_step(outcome, before, after)
            phases.append(summary)
            before = after
            remaining = outcome.done
            progress(
                f"fleet {phase}: {summary['devices']:,} devices in {summary['elapsed_s']} s,"
                f" server CPU {summary.get('server_cpu_ms_per_device', '-')} ms/device"
                + (
                    f"; {summary['errors']} failed, first: {summary['first_error']}"
                    if summary["errors"]
                    else ""
                )
            )
            if not remaining:
                raise BenchmarkError(f"fleet {phase}: no device got through: {outcome.errors[:1]}")
    finally:
        for admin in admins:
            await admin.aclose()
    sizes["end"] = before
    result: dict[str, Any] = {"phases": phases, "database_sizes": sizes}
    result["tables"] = table_sizes(db_path)
    result["handshakes"] = await _handshakes(remaining, target, server, params, tls_dir, progress)
    result["lifetimes_s"] = _lifetimes(remaining[0])
    revoked = remaining[: min(params.revoke_devices, len(remaining))]
    if revoked:
        progress(f"fleet: disabling {len(revoked)} devices for the CRL figures")
        crl_before = await _crl_sizes(target)
        fetched_before = await _crl_fetches(target, server, CRL_TIMED, params.crl_fetches)
        admin = await target.connect()
        try:
            for device in revoked:
                path = f"{DEVICES_API}/{urllib.parse.quote(device.urn, safe='')}/disable"
                await request_json(
                    admin, "POST", path, None, "disable a device", headers=admin_headers
                )
        finally:
            await admin.aclose()
        result["crl"] = _crl_figures(
            crl_before, await _crl_sizes(target), len(revoked), result["lifetimes_s"]
        )
        fetched_after = await _crl_fetches(target, server, CRL_TIMED, params.crl_fetches)
        result["crl"]["serving"] = _crl_fetch_cost(fetched_before, fetched_after)
    result["completed"] = len(remaining)
    return result


def _without_connections(phase: dict[str, Any], handshakes: dict[str, Any]) -> None:
    """Add the step's new connections per device and its server CPU per operation less
    their cost (measured apart: :func:`_handshakes`)."""
    opened = CONNECTIONS[phase["phase"]]
    phase["connections_per_device"] = dict(opened)
    per_device = phase.get("server_cpu_ms_per_device")
    costs = [_connection_cost(handshakes, kind) for kind in opened]
    if per_device is None or None in costs:
        return
    spent = sum(n * float(c or 0) for n, c in zip(opened.values(), costs, strict=True))
    operations = phase["operations_per_device"]
    phase["server_cpu_us_per_operation_without_connections"] = rounded(
        max(0.0, per_device * 1e3 - spent) / operations, 1
    )


def _connection_cost(handshakes: dict[str, Any], kind: str) -> float | None:
    """The server's CPU µs per new connection of *kind*, if measured."""
    value = (handshakes.get(kind) or {}).get("server_cpu_us_per_connection")
    return float(value) if isinstance(value, int | float) else None


def run_fleet(params: FleetParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    from tests.attestation_fakes import make_vendor

    work_dir.mkdir(parents=True, exist_ok=True)
    progress(f"fleet: preparing {params.devices:,} devices (EK, EK certificate, AK, keys, CSR)")
    started = time.perf_counter()
    vendor = make_vendor("Fleet Benchmark TPM Vendor EK Root")
    devices = prepare(params.devices, vendor)
    prepare_s = time.perf_counter() - started
    data_dir = work_dir / "ca"
    init = create_ca(data_dir, KeyType.P256)
    (data_dir / "ek-roots").mkdir(exist_ok=True)
    vendor.write_root(data_dir / "ek-roots" / "fleet-vendor.pem")
    password_file = write_password_file(work_dir / "password")
    admin_token = init.admin_token.read_text().strip()
    tls_dir = work_dir / "client-certificates"
    tls_dir.mkdir(mode=0o700)
    db_path = data_dir / DB_PATH
    empty = database_size(db_path)["db_bytes"]
    pinning = Pinning.choose(params.pin)
    progress(
        f"fleet: {params.devices:,} devices prepared in {prepare_s:.1f} s; starting devid serve"
    )
    server = ServerProcess(
        data_dir, password_file, work_dir, HOST, cpus=pinning.server, name="fleet-server"
    )
    exit_status: Any = None
    try:
        url = server.wait_ready(init.root_path, params.startup_timeout_s)
        port = int(url.rsplit(":", 1)[1])
        target = Server(
            port,
            init.root_path,
            ssl.create_default_context(cafile=str(init.root_path)),
            admin_token,
        )
        progress(f"fleet: devid serve --host {HOST} pid {server.pid} at {url}")
        with client_affinity(pinning.client):
            driven = trio.run(_drive, params, devices, target, server, db_path, tls_dir, progress)
        peak_rss = server.memory().total("VmHWM")
    finally:
        exit_status = server.stop()
    handshakes = driven["handshakes"]
    for phase in driven["phases"]:
        _without_connections(phase, handshakes)
    phases = {p["phase"]: p for p in driven["phases"]}
    flow = [phases[name] for name in FLOW if name in phases]
    completed = driven["completed"]
    wall = sum(p["elapsed_s"] for p in flow)
    cpu = [p.get("server_cpu_s") for p in flow]
    sizes = driven["database_sizes"]
    result: dict[str, Any] = {
        "parameters": {**params.describe(), "pinning": pinning.describe()},
        "devices": params.devices,
        "completed": completed,
        "errors": sum(p["errors"] for p in driven["phases"]),
        "prepare_s": rounded(prepare_s),
        "wall_s": rounded(wall),
        "devices_per_s": rounded(completed / wall, 2) if wall else None,
        "phases": driven["phases"],
        "database": {
            "empty_ca_bytes": empty,
            "before_registration_bytes": sizes["start"],
            "after_flow_bytes": sizes["end"],
            "wal_bytes_after_checkpoint": sizes.get("wal_after_checkpoint"),
            "bytes_per_device": rounded((sizes["end"] - sizes["start"]) / completed, 1),
            "flow_bytes_per_device": rounded(sum(p["db_bytes_per_device"] or 0 for p in flow), 1),
            "tables": [
                {**t, "bytes_per_device": rounded(t["bytes"] / completed, 1)}
                for t in driven["tables"] or []
            ],
        },
        "lifetimes_s": driven["lifetimes_s"],
        "handshakes": handshakes,
        "server": {
            "pid": server.pid,
            "command": server.command,
            "peak_rss_kib": peak_rss,
            "exit_status": exit_status,
        },
    }
    if all(c is not None for c in cpu):
        total = sum(float(c) for c in cpu if c is not None)
        result["server_cpu_s"] = rounded(total)
        result["server_cpu_ms_per_device"] = rounded(total / completed * 1e3)
    if "crl" in driven:
        result["crl"] = driven["crl"]
    return result


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fleet (simulated devices through the whole flow)")
    group.add_argument(
        "--fleet",
        type=parse_positive,
        metavar="N",
        help="fleet: simulated devices (default 10,000; quick 1,000)",
    )
    group.add_argument(
        "--fleet-concurrency",
        type=parse_positive,
        metavar="N",
        help=f"fleet: devices in flight at once (default {DEFAULT_CONCURRENCY})",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    concurrency = options.fleet_concurrency or DEFAULT_CONCURRENCY
    params = FleetParams(
        devices=context.size("fleet", "fleet"),
        concurrency=concurrency,
        pin=not options.no_pin,
    )
    return run_fleet(params, context.work_dir, context.progress)
