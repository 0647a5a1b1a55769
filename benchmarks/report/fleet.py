"""The fleet section's tables: each step of the flow, latency per request, the database
per table, and an estimate on paper for larger fleets from the measured per-device costs.

The estimate is computed here, from the results alone, so that a report rendered
again from any ``bench-*.json`` shows the same figures; its assumptions are the
constants below, and its notes state them.
"""

from __future__ import annotations

from typing import Any

from .format import Table, lookup, mib, number

#: The fleet sizes the estimate is made for.
SCALES = (10_000, 100_000, 1_000_000)
DAY_S = 86_400
#: Renewals do not come evenly over the day: the busiest hour is taken as this many
#: times the day's average (devices that enrolled together renew together).
PEAK_FACTOR = 3.0
#: Share of the fleet's devices disabled (or removed) per day, each revoking what it holds.
REVOCATION_RATE_PER_DAY = 0.01
#: What a device does in each step (the table's second column).
WHAT: dict[str, str] = {
    "register": "POST /api/v1/devices (the operator)",
    "enrol": "AK enrolment: POST /attest, /secret",
    "order": "device-attest-01 order, 8 requests",
    "accounts": "account listing + 2 account certificates",
    "renew": "3 renewals, POST /1.0/renew over mTLS",
}
#: The CRL the agent fetches before each enrolment (agent.enroll checks its AK certificate).
AGENT_FETCHES = "attestation"
#: The steps after the registration: the device's own flow.
FLOW = ("enrol", "order", "accounts", "renew")
#: The database tables shown by name; the rest are summed.
TOP_TABLES = 8


def size_text(value: float | None) -> str:
    """Bytes as B, KiB, MiB, GiB or TiB."""
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def fleet_tables(fleet: dict[str, Any]) -> list[Table]:
    phases = {p["phase"]: p for p in fleet.get("phases", [])}
    tables = [_steps_table(fleet, phases), _latency_table(phases)]
    database = _database_table(fleet)
    if database.rows:
        tables.append(database)
    estimate = estimate_table(fleet)
    if estimate is not None:
        tables.append(estimate)
    return tables


def _steps_table(fleet: dict[str, Any], phases: dict[str, dict[str, Any]]) -> Table:
    params = fleet["parameters"]
    t = Table(
        f"Fleet: {fleet['devices']:,} simulated devices through the whole flow against one"
        f" devid serve --host {params['host']} ({params['concurrency']} devices in flight)",
        [
            "step",
            "what each device does",
            "devices",
            "wall s",
            "devices/s",
            "server CPU ms/device",
            "server µs/operation",
            "same, connections apart",
            "server cores",
            "client CPU ms/device",
            "DB bytes/device",
        ],
    )
    for name, phase in phases.items():
        errors = f" ({phase['errors']} failed)" if phase["errors"] else ""
        t.rows.append(
            [
                name,
                WHAT.get(name, name),
                f"{phase['devices']:,}{errors}",
                number(phase["elapsed_s"], 1),
                number(phase["devices_per_s"], 1),
                number(phase.get("server_cpu_ms_per_device"), 2),
                number(phase.get("server_cpu_us_per_operation"), 0),
                number(phase.get("server_cpu_us_per_operation_without_connections"), 0),
                number(phase.get("server_cores"), 2),
                number(phase.get("client_cpu_ms_per_device"), 2),
                number(phase.get("db_bytes_per_device"), 0),
            ]
        )
    flow = [phases[name] for name in FLOW if name in phases]
    client = [p.get("client_cpu_ms_per_device") for p in flow]
    t.rows.append(
        [
            "flow",
            "enrolment to renewals (registration apart)",
            f"{fleet['completed']:,}",
            number(fleet.get("wall_s"), 1),
            number(fleet.get("devices_per_s"), 1),
            number(fleet.get("server_cpu_ms_per_device"), 2),
            "",
            "",
            "",
            number(sum(c for c in client if c is not None), 2),
            number(lookup(fleet, "database", "flow_bytes_per_device"), 0),
        ]
    )
    operations = ", ".join(
        f"{name} {p['operations_per_device']} {p['operation']}"
        + ("s" if p["operations_per_device"] > 1 else "")
        for name, p in phases.items()
    )
    t.notes.append(
        "the fleet moves one step at a time (every device registers, then every device enrols"
        " its AK, ...), each device's steps in the product's order; server CPU = user + system"
        " time of the server process over the step ÷ devices, the TLS handshakes of the step's"
        " connections included (a new connection per exchange, one per renewal: its client"
        " certificate is the credential); server µs/operation ÷ " + operations
    )
    t.notes.append(
        f"the software device stands in for the TPM (ECC P-256 EK from a fake vendor, P-256 AK,"
        f" device and account keys), its evidence made before the clock ran"
        f" ({number(fleet.get('prepare_s'), 1)} s for the fleet); DB bytes = growth of the"
        " SQLite file over the step after a TRUNCATE checkpoint (synchronous=full); server peak"
        f" RSS {mib(lookup(fleet, 'server', 'peak_rss_kib'))}"
    )
    handshakes = fleet.get("handshakes") or {}
    if handshakes:
        t.notes.append(
            "connections apart: less the server's CPU for the step's new connections, measured"
            f" on their own over {handshakes.get('connections', 0):,} connections each with one"
            " GET /health: TLS"
            f" {number(lookup(handshakes, 'tls', 'server_cpu_us_per_connection'), 0)} µs, mTLS"
            " (the device certificate as client certificate)"
            f" {number(lookup(handshakes, 'mtls', 'server_cpu_us_per_connection'), 0)} µs per"
            " connection; one TLS connection per device for enrol, order and accounts, one mTLS"
            " connection per renewal"
        )
    pinning = params.get("pinning")
    t.notes.append(
        f"server pinned to CPU {pinning['server_cpus']}, load generator to CPU"
        f" {pinning['client_cpus']}"
        if pinning
        else "not pinned: server and load generator share every CPU"
    )
    failed = [p for p in phases.values() if p.get("first_error")]
    if failed:
        t.notes.append(f"first failure: {failed[0]['first_error']}")
    return t


def _latency_table(phases: dict[str, dict[str, Any]]) -> Table:
    t = Table(
        "Fleet: wall latency of each request of a device's flow",
        ["step", "request", "count", "p50 ms", "p99 ms", "mean ms"],
    )
    for name, phase in phases.items():
        for step in phase.get("steps", []):
            t.rows.append(
                [
                    name,
                    step["step"],
                    f"{step['count']:,}",
                    number(step["p50_ms"], 1),
                    number(step["p99_ms"], 1),
                    number(step["mean_ms"], 1),
                ]
            )
    t.notes.append(
        "connect = TCP + TLS handshake of the step's connection; order = newAccount to download;"
        " a renewal includes its mTLS handshake; the challenge is validated while the server"
        " answers it (device-attest-01 needs no polling)"
    )
    return t


def _database_table(fleet: dict[str, Any]) -> Table:
    database = fleet.get("database") or {}
    tables = database.get("tables") or []
    t = Table(
        "Fleet: database bytes per device by table and index, after the flow",
        ["table or index", "bytes/device", "share"],
    )
    whole = sum(float(row["bytes"]) for row in tables)
    if not whole:
        return t
    for row in tables[:TOP_TABLES]:
        t.rows.append(
            [row["name"], number(row["bytes_per_device"], 0), f"{row['bytes'] / whole:.1%}"]
        )
    rest = tables[TOP_TABLES:]
    if rest:
        per_device = sum(float(r["bytes_per_device"]) for r in rest)
        share = sum(float(r["bytes"]) for r in rest) / whole
        t.rows.append([f"{len(rest)} others", number(per_device, 0), f"{share:.1%}"])
    t.notes.append(
        f"SQLite's dbstat over the whole file ({size_text(database.get('after_flow_bytes'))}"
        f" for {fleet['completed']:,} devices, {size_text(database.get('empty_ca_bytes'))}"
        " of it before the first device; the WAL"
        f" {size_text(database.get('wal_bytes_after_checkpoint'))} after the checkpoint), so"
        " small tables round up to whole pages"
    )
    return t


def estimate(fleet: dict[str, Any], devices: int) -> dict[str, float | None]:
    """The estimate for *devices* renewing daily, from the measured per-device figures."""
    phases = {p["phase"]: p for p in fleet.get("phases", [])}

    def cpu_s(*names: str) -> float | None:
        values = [lookup(phases, name, "server_cpu_ms_per_device") for name in names]
        if any(not isinstance(v, int | float) for v in values):
            return None
        return sum(float(v) for v in values) / 1e3

    def cores(per_device_day: float | None, factor: float) -> float | None:
        return devices * per_device_day / DAY_S * factor if per_device_day is not None else None

    renew = cpu_s("renew")
    agent = cpu_s("order", "accounts")
    enrolled = [lookup(phases, name, "db_bytes_per_device") for name in ("register", *FLOW[:-1])]
    grown = lookup(phases, "renew", "db_bytes_per_device")
    out: dict[str, float | None] = {
        "devices": float(devices),
        "renewals_per_s": devices * 3 / DAY_S,
        "cores_average": cores(renew, 1.0),
        "cores_peak": cores(renew, PEAK_FACTOR),
        "cores_peak_reorder": cores(agent, PEAK_FACTOR),
        "db_bytes_enrolled": (
            devices * sum(float(v) for v in enrolled)
            if all(isinstance(v, int | float) for v in enrolled)
            else None
        ),
        "db_bytes_per_day": devices * float(grown) if isinstance(grown, int | float) else None,
    }
    listed: dict[str, float] = {}
    for issuer, crl in (lookup(fleet, "crl", "crls") or {}).items():
        per_entry, per_device, life = (
            crl.get("bytes_per_entry"),
            crl.get("entries_per_revoked_device"),
            crl.get("lifetime_s"),
        )
        if None in (per_entry, per_device, life):
            out[f"crl_{issuer}_bytes"] = None
            continue
        days = max(1.0, float(life) / DAY_S)
        listed[issuer] = devices * REVOCATION_RATE_PER_DAY * float(per_device) * days
        out[f"crl_{issuer}_bytes"] = float(crl["bytes_before"]) + listed[issuer] * float(per_entry)
    # Re-ordering, the agent fetches the attestation CRL before each enrolment: a day's
    # fetches, each built from the store (a fixed part and a part per entry, measured).
    empty = lookup(fleet, "crl", "serving", "server_cpu_us_per_fetch_empty")
    per_entry_us = lookup(fleet, "crl", "serving", "server_cpu_us_per_entry")
    out["cores_peak_crl_fetches"] = None
    if isinstance(empty, int | float) and isinstance(per_entry_us, int | float):
        fetch_s = (float(empty) + listed.get(AGENT_FETCHES, 0.0) * float(per_entry_us)) / 1e6
        out["cores_peak_crl_fetches"] = cores(fetch_s, PEAK_FACTOR)
    return out


def estimate_table(fleet: dict[str, Any]) -> Table | None:
    if not lookup(fleet, "phases"):
        return None
    crls = list((lookup(fleet, "crl", "crls") or {}).keys())
    t = Table(
        "Fleet: ESTIMATE on paper from the measured per-device costs, devices renewing daily",
        [
            "devices",
            "renewals/s (average)",
            "cores, average",
            f"cores, peak x{PEAK_FACTOR:g}",
            f"cores, peak x{PEAK_FACTOR:g} re-ordering",
            f"its CRL fetches, cores peak x{PEAK_FACTOR:g}",
            "DB after enrolment",
            "DB growth per day",
            *(f"CRL {issuer}" for issuer in crls),
        ],
    )
    for devices in SCALES:
        e = estimate(fleet, devices)
        t.rows.append(
            [
                f"{devices:,}",
                number(e["renewals_per_s"], 1),
                number(e["cores_average"], 3),
                number(e["cores_peak"], 3),
                number(e["cores_peak_reorder"], 3),
                number(e["cores_peak_crl_fetches"], 3),
                size_text(e["db_bytes_enrolled"]),
                size_text(e["db_bytes_per_day"]),
                *(size_text(e.get(f"crl_{issuer}_bytes")) for issuer in crls),
            ]
        )
    phases = {p["phase"]: p for p in fleet.get("phases", [])}
    renew_ms = lookup(phases, "renew", "server_cpu_ms_per_device")
    reorder_ms = [
        lookup(phases, name, "server_cpu_ms_per_device") for name in ("order", "accounts")
    ]
    t.notes.append(
        f"an estimate computed from this run's {fleet['completed']:,}-device figures, not a"
        " measurement at these sizes: every device renews its 3 certificates once a day over"
        f" POST /1.0/renew (measured {number(renew_ms, 2)} ms of server CPU per device, mTLS"
        " handshakes included); cores = devices x that ÷ 86,400 s, spread evenly over the day"
        f" (average) or with the busiest hour at {PEAK_FACTOR:g}x the average (peak); one core"
        " is one core like this machine's, with the SQLite store on its disk"
    )
    t.notes.append(
        "re-ordering: the agent (agent/daemon.py) renews today by a new device-attest-01 order"
        " and new account certificates rather than POST /1.0/renew: the order and accounts"
        " steps' server CPU per device ("
        + " + ".join(number(v, 2) for v in reorder_ms)
        + " ms) a day instead; neither counts the agent's hourly account listing nor a new AK"
        " enrolment when an AK certificate expires"
    )
    serving = lookup(fleet, "crl", "serving") or {}
    if "server_cpu_us_per_entry" in serving:
        t.notes.append(
            "its CRL fetches: before each enrolment the agent fetches GET /crl/attestation"
            " (agent.enroll checks its AK certificate), which the server builds again after"
            " each revocation and serves from memory in between; one fetch a device a day at"
            " the estimated attestation CRL's entries, each fetch costing"
            f" {number(serving.get('server_cpu_us_per_fetch_empty'), 0)} µs + "
            f"{number(serving.get('server_cpu_us_per_entry'), 2)} µs per entry (measured on"
            f" the {lookup(serving, 'after', 'issuer')} CRL with"
            f" {lookup(serving, 'before', 'entries')} and"
            f" {lookup(serving, 'after', 'entries')} entries,"
            f" {lookup(serving, 'after', 'fetches')} fetches each, extrapolated linearly)"
        )
    t.notes.append(
        "DB after enrolment = devices x the bytes per device of registration, enrolment, order"
        " and account certificates; growth per day = devices x the renewal step's bytes per"
        " device (3 certificates and their audit events): the store keeps expired"
        " certificates, so without pruning the database grows by that every day"
    )
    if crls:
        crl = lookup(fleet, "crl", "crls") or {}
        parts = [
            f"{issuer} {number(c.get('entries_per_revoked_device'), 0)}"
            f" entr{'y' if c.get('entries_per_revoked_device') == 1 else 'ies'} of"
            f" {number(c.get('bytes_per_entry'), 0)} bytes, listed up to"
            f" {number((c.get('lifetime_s') or 0) / DAY_S, 0)} d"
            for issuer, c in crl.items()
        ]
        t.notes.append(
            f"CRLs: {REVOCATION_RATE_PER_DAY:.0%} of the devices disabled a day, each revoking"
            " what it holds; a revoked certificate stays listed until it expires, counted here"
            " for its whole lifetime (an upper bound); measured per revoked device, from CRLs"
            " devid built after disabling "
            f"{lookup(fleet, 'crl', 'revoked_devices')} devices: " + "; ".join(parts)
        )
    return t
