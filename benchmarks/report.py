"""Presenting results: aligned text tables, a markdown file, the JSON files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _rate(figures: dict[str, Any], spread_key: str) -> str:
    """A rate, with ``~`` when its repetitions spread too widely to trust the median."""
    text = _num(figures.get("issuances_per_s"))
    noisy = bool((figures.get(spread_key) or {}).get("noisy"))
    return f"{text}~" if noisy else text


NOISY_NOTE = (
    "~ repetitions spread by more than 25% (max-min vs median; see the JSON): the machine"
    " was busy or the disk's fsync latency varied; rerun on a quiet machine"
)


#: Client cores above this: the load generator, pinned to one CPU, may be the bottleneck.
CLIENT_SATURATED = 0.85


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.1f} MiB" if isinstance(kib, int | float) else "-"


def summary_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    fs = m.get("work_dir_filesystem") or {}
    cpus = m.get("cpus_usable") or m.get("cpu_count")
    git = m.get("git") or {}
    revision = f", devid {git['commit'][:10]}{'+dirty' if git.get('dirty') else ''}" if git else ""
    return (
        f"{results.get('mode', '?')} run{' (custom sizes)' if results.get('custom_sizes') else ''},"
        f" {results.get('started_at', '?')}: {cpus} CPUs"
        f" ({m.get('cpu_model') or m.get('machine', '?')}), Python {m.get('python', '?')},"
        f" cryptography {m.get('cryptography', '?')} ({m.get('openssl', '?')}),"
        f" SQLite {m.get('sqlite', '?')}, temp data on {fs.get('type', '?')}{revision}"
    )


def build_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    headline = headline_table(results)
    if headline.rows:
        tables.append(headline)
    inprocess = results.get("inprocess")
    if inprocess and "key_types" in inprocess:
        p = inprocess["parameters"]
        t = Table(
            "In-process: Authority.sign (token + CSR + build + sign + SQLite), issuances/s",
            [
                "issuer",
                "sync=full/s",
                "sync=normal/s",
                "crypto limit/s",
                "full÷limit",
                "normal÷limit",
                "p50 ms",
                "p99 ms",
                "non-crypto µs",
                "CPU µs",
                "crypto÷CPU",
            ],
        )
        for name, r in inprocess["key_types"].items():
            full = r.get("sync_full", {})
            normal = r.get("sync_normal", {})
            t.rows.append(
                [
                    name,
                    _rate(full, "per_repetition"),
                    _rate(normal, "per_repetition"),
                    _num(r["crypto"]["limit_per_s"]),
                    _num(full.get("ratio_to_crypto_limit"), 3),
                    _num(normal.get("ratio_to_crypto_limit"), 3),
                    _num(full.get("latency_ms", {}).get("p50"), 2),
                    _num(full.get("latency_ms", {}).get("p99"), 2),
                    _num(full.get("non_crypto_us_per_issuance"), 0),
                    _num(full.get("cpu_us_per_issuance"), 0),
                    _num(full.get("crypto_share_of_cpu"), 3),
                ]
            )
        t.notes.append(
            f"median of {p['repetitions']} x {p['issuances_per_repetition']} issuances, one"
            f" caller; {p['client_key_type']} client keys; ES256 tokens; latencies, non-crypto µs,"
            " CPU µs (the process's user + system time per issuance) and crypto÷CPU (the"
            " crypto-only µs ÷ CPU µs: the share of the CPU spent in unavoidable public-key"
            " work, with the fsync waits left out) are for sync=full"
        )
        if any("~" in cell for row in t.rows for cell in row):
            t.notes.append(NOISY_NOTE)
        tables.append(t)
        c = Table(
            "Crypto-only limit: µs per operation (same keys, same run)",
            ["issuer", "token verify", "CSR verify", "issuer sign", "sum", "limit/s"],
        )
        for name, r in inprocess["key_types"].items():
            k = r["crypto"]
            c.rows.append(
                [
                    name,
                    _num(k["token_verify_us"]),
                    _num(k["csr_verify_us"]),
                    _num(k["issuer_sign_us"]),
                    _num(k["sum_us"]),
                    _num(k["limit_per_s"]),
                ]
            )
        tables.append(c)
    breakdown = results.get("breakdown")
    if breakdown and "stages" in breakdown:
        total = float(breakdown["authority_sign_us"])
        b = Table(
            f"Where the time goes: Authority.sign, {breakdown['key_type']} issuer,"
            f" sync={breakdown['sync']}, µs per issuance",
            ["function called by Authority.sign", "µs", "share"],
        )
        for stage in breakdown["stages"]:
            name = f"  └ {stage['name']}" if stage["parent"] else stage["name"]
            value = float(stage["us"])
            b.rows.append([name, _num(value), f"{100 * value / total:.0f}%"])
        b.rows.append(
            ["unaccounted (whole - top-level rows)", _num(breakdown["unaccounted_us"]), ""]
        )
        b.rows.append(["Authority.sign (timed whole)", _num(total), "100%"])
        b.notes.append("└ rows are part of the row above them")
        tables.append(b)
    profile = results.get("profile")
    if profile and "groups" in profile:
        pr = Table(
            f"cProfile of Authority.sign ({profile['key_type']}, sync=full), cumulative µs"
            " per issuance incl. profiler overhead",
            ["function", "µs"],
        )
        for group in profile["groups"]:
            pr.rows.append([group["function"], _num(group["cumulative_us_per_issuance"])])
        pr.notes.append(f"full listing: {Path(profile['text']).name} next to this file")
        tables.append(pr)
    tables.extend(_host_tables(results))
    return tables


def _get(data: Any, *keys: Any) -> Any:
    """data[k1][k2]... or None when any step is missing."""
    for key in keys:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_dict or in_list):
            return None
        data = data[key]
    return data


def _meets(value: Any, target: float, at_least: bool) -> str:
    if not isinstance(value, int | float):
        return "-"
    return "yes" if (value >= target if at_least else value <= target) else "no"


def _level(host: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    for level in (host or {}).get("levels", []):
        if level.get("concurrency") == concurrency:
            return dict(level)
    return None


#: The soak target: RSS flat across this many issuances, read as at most this much growth
#: per 10,000 issuances over the second half (a leak of 50 bytes per issuance shows).
SOAK_TARGET_ISSUANCES = 100_000
SOAK_FLAT_MIB_PER_10K = 0.5


def headline_table(results: dict[str, Any]) -> Table:
    """Every figure the issue names, with its ratio and the issue's target."""
    t = Table(
        "Headline ratios (issue 6 targets; measured on this machine, not enforced)",
        ["figure", "value", "measured as", "target", "meets"],
    )
    p256 = _get(results, "inprocess", "key_types", "P-256")
    if p256:
        full = p256.get("sync_full", {})
        value = full.get("ratio_to_crypto_limit")
        t.rows.append(
            [
                "in-process ÷ crypto limit (P-256, sync=full)",
                _num(value, 3),
                f"{_num(full.get('issuances_per_s'))}/s of {_num(p256['crypto']['limit_per_s'])}/s",
                "≥ 0.70",
                _meets(value, 0.70, True),
            ]
        )
        share = full.get("crypto_share_of_cpu")
        if share is not None:
            t.rows.append(
                [
                    "in-process crypto-only µs ÷ CPU µs (P-256, sync=full)",
                    _num(share, 3),
                    f"{_num(p256['crypto']['sum_us'])} µs of"
                    f" {_num(full.get('cpu_us_per_issuance'))} µs CPU per issuance"
                    " (fsync waits left out)",
                    "-",
                    "-",
                ]
            )
    hosts = _get(results, "http", "hosts") or {}
    pinned = _get(results, "http", "parameters", "pinning")
    for name, target in (("raw", 0.60), ("quart", 0.25)):
        best = _get(hosts, name, "best")
        if best:
            value = best.get("ratio_to_inprocess")
            t.rows.append(
                [
                    f"{name} host ÷ in-process (best level)",
                    _num(value, 3),
                    f"{_num(best['issuances_per_s'])}/s at c={best['concurrency']}"
                    + (", server and client pinned apart" if pinned else ""),
                    f"≥ {target:.2f}",
                    _meets(value, target, True),
                ]
            )
    scaling = results.get("scaling") or {}
    two = _get(scaling, "ratios", "2_over_1")
    if two is not None:
        rows = {row["workers"]: row for row in scaling.get("workers", [])}
        client = _get(rows, 2, "levels", 0, "client_cpu_cores")
        one_cores = _get(rows, 1, "levels", 0, "server_cpu_cores")
        cpus = scaling.get("cpus_usable")
        # What the cores allow: two workers get at most the CPUs the load generator leaves
        # (and at most two), against what one worker used.
        ceiling = (
            min(2.0, float(cpus) - float(client)) / float(one_cores)
            if client is not None and one_cores and cpus
            else None
        )
        meets = _meets(two, 1.8, True)
        if ceiling is not None and ceiling < 1.8:
            meets = f"{meets} (cores allow {_num(ceiling, 2)} here)"
        t.rows.append(
            [
                "raw 2 workers ÷ 1 worker",
                _num(two, 3),
                f"{_num(_get(rows, 2, 'best', 'issuances_per_s'))}/s vs"
                f" {_num(_get(rows, 1, 'best', 'issuances_per_s'))}/s on"
                f" {cpus or '?'} CPUs, load generator using {_num(client, 2)} of them;"
                f" ceiling (CPUs - client cores, at most 2) ÷ 1 worker's {_num(one_cores, 2)}"
                f" cores = {_num(ceiling, 2)}",
                "≥ 1.8 where cores allow",
                meets,
            ]
        )
    for name in hosts:
        level = _level(hosts[name], 32)
        if level and level.get("p99_over_p50") is not None:
            lat = level.get("latency_ms", {})
            t.rows.append(
                [
                    f"p99 ÷ p50 at 32 connections ({name})",
                    _num(level["p99_over_p50"], 2),
                    f"{_num(lat.get('p99'), 1)} ms ÷ {_num(lat.get('p50'), 1)} ms",
                    "≤ 4",
                    _meets(level["p99_over_p50"], 4.0, False),
                ]
            )
    soak = results.get("soak") or {}
    if soak.get("checkpoints"):
        per_10k_mib = (soak.get("second_half_growth_kib_per_10k") or 0) / 1024
        issued = int(soak.get("issued") or 0)
        t.rows.append(
            [
                "soak: RSS growth, 2nd half, per 10,000 issuances",
                f"{_num(per_10k_mib, 2)} MiB",
                f"RSS {_mib(_get(soak, 'start', 'rss_kib'))}"
                f" → {_mib(_get(soak, 'middle', 'rss_kib'))}"
                f" → {_mib(_get(soak, 'end', 'rss_kib'))} over {issued:,} issuances"
                f" (end ÷ start {_num(soak.get('growth_ratio'), 3)})",
                f"flat over {SOAK_TARGET_ISSUANCES:,}: ≤ {SOAK_FLAT_MIB_PER_10K} MiB",
                _meets(per_10k_mib, SOAK_FLAT_MIB_PER_10K, False)
                if issued >= SOAK_TARGET_ISSUANCES
                else f"- (only {issued:,})",
            ]
        )
    for ek, run in (_get(results, "attestation", "ek_types") or {}).items():
        share = run.get("wall_share", {})
        t.rows.append(
            [
                f"attestation: AK enrolments/s ({ek} EK, one swtpm)",
                _num(run.get("enrolments_per_s"), 2),
                f"wall time TPM {100 * share.get('tpm', 0):.0f}%,"
                f" HTTP+server {100 * share.get('server', 0):.0f}%",
                "-",
                "-",
            ]
        )
    device = _get(results, "attestation", "device_attest")
    if device:
        enrolment = device.get("enrolment") or {}
        t.rows.append(
            [
                "device-attest-01 enrolments/s (agent.enroll, one swtpm)",
                _num(enrolment.get("enrolments_per_s"), 2),
                f"one at a time, TPM {100 * (_get(enrolment, 'wall_share', 'tpm') or 0):.0f}% of"
                " the wall time",
                "-",
                "-",
            ]
        )
        best = device.get("best_validations")
        if best:
            t.rows.append(
                [
                    "device-attest-01 validations/s (server)",
                    _num(best["validations_per_s"]),
                    f"challenge responses at c={best['concurrency']}, attestation objects"
                    " prepared first",
                    "-",
                    "-",
                ]
            )
    acme = results.get("acme") or {}
    skipped = (results.get("skipped") or {}).get("acme")
    ratios = acme.get("ratios") or {}
    pebble_best = _get(acme, "servers_by_label", "pebble", "best") or {}
    for host, ratio in ratios.items():
        devid_best = _get(acme, "servers_by_label", f"devid-{host}", "best") or {}
        t.rows.append(
            [
                f"ACME orders/s devid ÷ pebble ({host} host)",
                _num(ratio.get("best"), 2),
                f"{_num(devid_best.get('orders_per_s'))}/s at c={devid_best.get('concurrency')}"
                f" vs {_num(pebble_best.get('orders_per_s'))}/s at"
                f" c={pebble_best.get('concurrency')}; same client, same http-01 responder",
                "≥ 2",
                _meets(ratio.get("best"), 2.0, True),
            ]
        )
    if not ratios and (skipped or "acme" in (results.get("errors") or {})):
        t.rows.append(["ACME orders/s devid ÷ pebble", "not measured", "see below", "≥ 2", "-"])
    return t


def _host_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    http = results.get("http")
    if http and http.get("hosts"):
        ref = http["inprocess_reference"]
        h = Table(
            "Through each host: devid serve subprocess, HTTPS HTTP/1.1 keep-alive, P-256 issuer,"
            " sync=full",
            [
                "host",
                "concurrency",
                "requests",
                "issuances/s",
                "p50 ms",
                "p99 ms",
                "p99÷p50",
                "server CPU ms/iss",
                "server cores",
                "client CPU ms/iss",
                "client cores",
                "host÷in-process",
            ],
        )
        memory_notes = []
        saturated = []
        for name, host in http["hosts"].items():
            for level in host["levels"]:
                lat = level.get("latency_ms", {})
                errors = f" ({level['errors']} errors)" if level["errors"] else ""
                h.rows.append(
                    [
                        name,
                        str(level["concurrency"]),
                        f"{level['ok']}{errors}",
                        _rate(level, "per_round"),
                        _num(lat.get("p50"), 2),
                        _num(lat.get("p99"), 2),
                        _num(level.get("p99_over_p50"), 2),
                        _num(level.get("server_cpu_ms_per_issuance"), 2),
                        _num(level.get("server_cpu_cores"), 2),
                        _num(level.get("client_cpu_ms_per_issuance"), 2),
                        _num(level.get("client_cpu_cores"), 2),
                        _num(level.get("ratio_to_inprocess"), 3),
                    ]
                )
                if (level.get("client_cpu_cores") or 0) > CLIENT_SATURATED:
                    saturated.append(f"{name} c={level['concurrency']}")
            server = host["server"]
            memory_notes.append(
                f"{name} {_mib(server.get('peak_rss_kib'))}"
                f" (idle after start {_mib(server.get('idle_rss_kib'))})"
            )
        params = http["parameters"]
        h.notes.append(
            f"median of {params['rounds']} rounds per host and level (interleaved); requests ="
            " timed requests over all rounds"
        )
        pinning = params.get("pinning")
        h.notes.append(
            f"server peak RSS (VmHWM): {', '.join(memory_notes)};"
            f" in-process P-256 reference {_num(ref.get('issuances_per_s'))}/s"
            f" ({ref.get('source')})"
        )
        h.notes.append(
            f"servers pinned to CPU {pinning['server_cpus']}, load generator to CPU"
            f" {pinning['client_cpus']}"
            if pinning
            else "not pinned: server and load generator share every CPU"
        )
        if saturated:
            h.notes.append(
                f"the load generator used more than {CLIENT_SATURATED:.0%} of a CPU at"
                f" {', '.join(saturated)}: there it may be the limit, not the server"
            )
        ratio = _get(http, "ratios", "raw_over_quart")
        if ratio is not None:
            h.notes.append(f"raw ÷ quart (best levels): {_num(ratio, 3)}")
        if any("~" in row[3] for row in h.rows):
            h.notes.append(NOISY_NOTE)
        tables.append(h)
    scaling = results.get("scaling")
    if scaling and scaling.get("workers"):
        params = scaling["parameters"]
        s = Table(
            f"Raw host worker processes: devid serve --host raw --workers N,"
            f" {params['concurrency'][0]} connections, each worker on a CPU of its own",
            [
                "workers",
                "issuances/s",
                "÷ 1 worker",
                "p50 ms",
                "p99 ms",
                "server cores",
                "client cores",
                "worker CPU shares",
                "peak RSS",
                "host÷in-process",
            ],
        )
        for row in scaling["workers"]:
            level = row["levels"][0]
            lat = level.get("latency_ms", {})
            ratio = (
                1.0 if row["workers"] == 1 else _get(scaling, "ratios", f"{row['workers']}_over_1")
            )
            shares = level.get("worker_cpu_shares")
            s.rows.append(
                [
                    str(row["workers"]),
                    _rate(level, "per_round"),
                    _num(ratio, 3),
                    _num(lat.get("p50"), 2),
                    _num(lat.get("p99"), 2),
                    _num(level.get("server_cpu_cores"), 2),
                    _num(level.get("client_cpu_cores"), 2),
                    " / ".join(f"{x:.2f}" for x in shares) if shares else "-",
                    _mib(row["server"].get("peak_rss_kib")),
                    _num(level.get("ratio_to_inprocess"), 3),
                ]
            )
        s.notes.append(
            f"{scaling.get('cpus_usable', '?')} usable CPUs shared by the workers and the load"
            " generator (client cores, not pinned): with as many workers as CPUs, the client's"
            " share is taken from the server. Each of N workers keeps to its own CPU (devid's"
            " default); the single worker is kept to one CPU too, so each configuration runs its"
            " workers alike"
        )
        s.notes.append(
            "peak RSS with workers: the sum of the workers' VmHWM (shared copy-on-write pages"
            " counted in each); the supervisor's own is in the JSON"
        )
        if any("~" in row[1] for row in s.rows):
            s.notes.append(NOISY_NOTE)
        tables.append(s)
    attestation = results.get("attestation") or {}
    for ek, run in (attestation.get("ek_types") or {}).items():
        params = attestation["parameters"]
        a = Table(
            f"Attestation: AK enrolments against swtpm ({ek} EK, {params['ak_algorithm']} AK)"
            f" through the {params['host']} host, ms per enrolment",
            ["step", "work of", "mean ms", "p50 ms", "p99 ms", "share"],
        )
        for step in run["steps"]:
            a.rows.append(
                [
                    step["step"],
                    step["work_of"],
                    _num(step["mean_ms"], 2),
                    _num(step["p50_ms"], 2),
                    _num(step["p99_ms"], 2),
                    f"{100 * float(step['share']):.0f}%",
                ]
            )
        lat = run["latency_ms"]
        a.rows.append(["whole enrolment", "", "", _num(lat["p50"], 2), _num(lat["p99"], 2), "100%"])
        cpu = run.get("cpu_ms_per_enrolment", {})
        a.notes.append(
            f"{_num(run['enrolments_per_s'], 2)} enrolments/s"
            f" ({run['enrolments']} in {_num(run['elapsed_s'])} s, one at a time)"
        )
        a.notes.append(
            f"CPU ms per enrolment: swtpm {_num(cpu.get('swtpm'))}, devid server"
            f" {_num(cpu.get('server'))}, agent side (this process) {_num(cpu.get('client'))}"
            + (
                f"; the server alone could do about {1000 / float(cpu['server']):.0f}"
                " enrolments per CPU-second"
                if isinstance(cpu.get("server"), int | float) and cpu["server"]
                else ""
            )
        )
        a.notes.append("POST rows include the client's TLS handshake and JSON work")
        if ek == "rsa":
            a.notes.append(
                "the agent re-creates the RSA EK from its template in both TPM rows that read"
                " it: a prime search in swtpm whose cost depends on the endorsement seed, so"
                " this figure varies from one provisioned swtpm to the next"
            )
        tables.append(a)
    soak = results.get("soak")
    if soak and soak.get("checkpoints"):
        params = soak["parameters"]
        k = Table(
            f"Soak: server RSS across {soak['issued']:,} issuances ({params['host']} host,"
            f" {params['concurrency']} connections, new connections every"
            f" {params['reading_every']:,})",
            ["issued", "RSS MiB", "since start", "HWM MiB", "chunk issuances/s", "store MiB"],
        )
        first = soak["checkpoints"][0]["rss_kib"] or 0
        for point in soak["checkpoints"]:
            rss = point["rss_kib"] or 0
            k.rows.append(
                [
                    f"{point['issued']:,}",
                    _num(rss / 1024, 1),
                    f"{(rss - first) / 1024:+.1f}",
                    _num((point["hwm_kib"] or 0) / 1024, 1),
                    _num(point["chunk_issuances_per_s"]),
                    _num(point["db_bytes"] / 1048576, 1),
                ]
            )
        k.notes.append(
            f"start {_mib(_get(soak, 'start', 'rss_kib'))}, middle"
            f" {_mib(_get(soak, 'middle', 'rss_kib'))}, end {_mib(_get(soak, 'end', 'rss_kib'))};"
            f" growth {_num((soak.get('growth_kib') or 0) / 1024, 2)} MiB"
            f" (end ÷ start {_num(soak.get('growth_ratio'), 3)}), second half"
            f" {_num((soak.get('second_half_growth_kib') or 0) / 1024, 2)} MiB ="
            f" {_num((soak.get('second_half_growth_kib_per_10k') or 0) / 1024, 2)} MiB per 10,000"
        )
        if soak.get("stopped_early"):
            k.notes.append(f"stopped early: {soak['stopped_early']}")
        tables.append(k)
    device = attestation.get("device_attest")
    if device and device.get("enrolment"):
        tables.append(_device_attest_table(device, attestation["parameters"]))
    acme = results.get("acme")
    if acme and acme.get("servers_by_label"):
        tables.extend(_acme_tables(acme))
    return tables


def _device_attest_table(device: dict[str, Any], params: dict[str, Any]) -> Table:
    enrolment = device["enrolment"]
    d = Table(
        f"ACME device-attest-01 against swtpm ({device.get('ek_type')} EK swtpm, ECC P-256"
        f" device key) through the {params['host']} host, /acme/devices",
        ["what", "concurrency", "count", "per second", "p50 ms", "p99 ms", "server CPU ms"],
    )
    lat = enrolment.get("latency_ms", {})
    cpu = enrolment.get("cpu_ms_per_enrolment", {})
    d.rows.append(
        [
            "enrolment (agent.enroll)",
            "1",
            str(enrolment["enrolments"]),
            _num(enrolment["enrolments_per_s"], 2),
            _num(lat.get("p50"), 1),
            _num(lat.get("p99"), 1),
            _num(cpu.get("server"), 1),
        ]
    )
    for level in device.get("validation_levels", []):
        errors = f" ({level['errors']} errors)" if level["errors"] else ""
        vlat = level.get("latency_ms", {})
        d.rows.append(
            [
                "validation (challenge POST)",
                str(level["concurrency"]),
                f"{level['ok']}{errors}",
                _num(level["validations_per_s"]),
                _num(vlat.get("p50"), 1),
                _num(vlat.get("p99"), 1),
                _num(level.get("server_cpu_ms_per_validation"), 1),
            ]
        )
    tpm = enrolment.get("tpm_ms_mean", {})
    d.notes.append(
        "enrolment: newAccount (existing), newOrder, authorization, TPM key + TPM2_Certify,"
        " challenge, finalize (TPM-signed CSR), download; TPM ms per enrolment: "
        + ", ".join(f"{name} {_num(ms, 1)}" for name, ms in tpm.items())
        + f"; CPU ms per enrolment: swtpm {_num(cpu.get('swtpm'))}, agent side"
        f" {_num(cpu.get('client'))}"
    )
    d.notes.append(
        "validation: only the challenge response (CBOR, AK chain, TPM2_Certify signature,"
        " bound identity, inventory), attestation objects prepared first; each came back valid"
    )
    return d


ACME_STEPS = ("newOrder", "authorization", "challenge", "validation", "finalize", "download")


def _acme_tables(acme: dict[str, Any]) -> list[Table]:
    servers: dict[str, Any] = acme["servers_by_label"]
    params = acme["parameters"]
    ratios = acme.get("ratios") or {}
    c = Table(
        "ACME: complete orders (newOrder, authorization, http-01 validated, finalize, download),"
        " same client and responder",
        [
            "server",
            "concurrency",
            "orders",
            "orders/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/order",
            "server cores",
            "client CPU ms/order",
            "polls/order",
            "÷ pebble",
        ],
    )
    for label, server in servers.items():
        for level in server["levels"]:
            lat = level.get("latency_ms", {})
            polls = level.get("polls_per_order") or {}
            errors = f" ({level['errors']} errors)" if level["errors"] else ""
            ratio = _get(ratios, server.get("host"), "by_concurrency", str(level["concurrency"]))
            c.rows.append(
                [
                    label,
                    str(level["concurrency"]),
                    f"{level['ok']}{errors}",
                    _rate({"issuances_per_s": level["orders_per_s"], **level}, "per_round"),
                    _num(lat.get("p50"), 1),
                    _num(lat.get("p99"), 1),
                    _num(level.get("server_cpu_ms_per_order"), 2),
                    _num(level.get("server_cpu_cores"), 2),
                    _num(level.get("client_cpu_ms_per_order"), 2),
                    _num(sum(polls.values()) if polls else None, 2),
                    _num(ratio, 3) if server["kind"] == "devid" else "",
                ]
            )
    fetches = []
    for label, server in servers.items():
        values = [lv.get("validator_fetches_per_order") for lv in server["levels"]]
        known = [float(v) for v in values if isinstance(v, int | float)]
        if known:
            fetches.append(f"{label} {_num(max(known), 1)}")
    pinning = params.get("pinning")
    c.notes.append(
        f"median of {params['rounds']} rounds per server and level (interleaved); a new name"
        " per order, validated for real through pebble-challtestsrv DNS (A 127.0.0.1) and one"
        " http-01 responder in the client process; one account per connection, untimed"
    )
    if fetches:
        c.notes.append(
            "token fetches per order by each server's validator: "
            + ", ".join(fetches)
            + " (pebble's VA makes 3 validation requests per challenge: 'Starting 3 validations.')"
        )
    env = " ".join(f"{k}={v}" for k, v in (params.get("pebble_environment") or {}).items())
    issuers = ", ".join(
        f"{label} {server.get('issuer_key') or '?'}" for label, server in servers.items()
    )
    c.notes.append(f"pebble {_get(acme, 'setup', 'pebble_version') or '?'} with {env}")
    c.notes.append(
        f"issuing keys: {issuers}; peak RSS: "
        + ", ".join(
            f"{label} {_mib(_get(server, 'server', 'peak_rss_kib'))}"
            for label, server in servers.items()
        )
    )
    seen = []
    for label, server in servers.items():
        steps: dict[str, set[str]] = {}
        for level in server["levels"]:
            for step, values in (level.get("retry_after_seen") or {}).items():
                steps.setdefault(step, set()).update(values)
        text = ", ".join(f"{step} {'/'.join(sorted(v))} s" for step, v in steps.items())
        seen.append(f"{label} {text or 'none'}")
    c.notes.append(
        "the client ignores Retry-After: it polls at once after the responder served the token,"
        " then 2, 4, 8 ... ms (at most 50 ms), the same for every server; Retry-After sent: "
        + "; ".join(seen)
    )
    c.notes.append(
        f"servers and DNS pinned to CPU {pinning['server_cpus']}, client and responder to CPU"
        f" {pinning['client_cpus']}"
        if pinning
        else "not pinned: servers, DNS and client share every CPU"
    )
    if any(row[3].endswith("~") for row in c.rows):
        c.notes.append(NOISY_NOTE)
    top = max(params["concurrency"])
    s = Table(
        f"ACME: mean ms per step of an order at c={top}",
        ["server", *ACME_STEPS, "whole", "newAccount p50"],
    )
    for label, server in servers.items():
        level = next((lv for lv in server["levels"] if lv["concurrency"] == top), None)
        if not level or not level.get("steps_mean_ms"):
            continue
        steps = level["steps_mean_ms"]
        s.rows.append(
            [
                label,
                *(_num(steps.get(step), 1) for step in ACME_STEPS),
                _num(_get(level, "latency_ms", "mean"), 1),
                _num(_get(level, "new_account_ms", "p50"), 1),
            ]
        )
    s.notes.append(
        "validation = from the challenge response until the authorization reads valid (the"
        " server's DNS lookup, its fetch from the responder, recording the result, the polls);"
        " finalize includes polling the order until valid"
    )
    return [c, s] if s.rows else [c]


def _widths(table: Table) -> list[int]:
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def render_text(results: dict[str, Any]) -> str:
    lines = [f"devid benchmarks: {summary_line(results)}"]
    for table in build_tables(results):
        widths = _widths(table)
        lines.append("")
        lines.append(table.title)

        def fmt(cells: Sequence[str], widths: list[int] = widths) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        lines.append(fmt(table.headers))
        lines.extend(fmt(row) for row in table.rows)
        lines.extend(f"  {note}" for note in table.notes)
    for section, message in results.get("skipped", {}).items():
        lines.append("")
        lines.append(f"{section}: not measured: {message}")
    for section, message in results.get("errors", {}).items():
        lines.append("")
        lines.append(f"{section}: FAILED: {message.splitlines()[0] if message else ''}")
    return "\n".join(lines) + "\n"


def render_markdown(results: dict[str, Any]) -> str:
    lines = [f"_devid benchmarks, {summary_line(results)}._"]
    for table in build_tables(results):
        lines.append("")
        lines.append(f"**{table.title}**")
        lines.append("")
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "|".join([":---", *["---:"] * (len(table.headers) - 1)]) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in table.rows)
        if table.notes:
            lines.append("")
            lines.extend(f"_{note}_" for note in table.notes)
    plot = results.get("plot") or {}
    if plot.get("file"):
        lines.append("")
        lines.append(f"![throughput against concurrency]({plot['file']})")
    for section, message in results.get("skipped", {}).items():
        lines.append("")
        lines.append(f"**{section} not measured:** {message}")
    for section, message in results.get("errors", {}).items():
        lines.append("")
        lines.append(f"**{section} failed:** `{message.splitlines()[0] if message else ''}`")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(out_dir: Path, results: dict[str, Any], stamp: str) -> dict[str, Path]:
    """OUT/bench-STAMP.json, OUT/latest.json and OUT/latest.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    paths = {
        "json": out_dir / f"bench-{stamp}.json",
        "latest_json": out_dir / "latest.json",
        "latest_md": out_dir / "latest.md",
    }
    _write_atomic(paths["json"], text)
    _write_atomic(paths["latest_json"], text)
    _write_atomic(paths["latest_md"], render_markdown(results))
    return paths
