"""The tables of a run, section by section, from the results alone (no measuring code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .accounts import accounts_table
from .acme import acme_tables
from .cloud import cloud_table
from .fleet import fleet_tables
from .format import (
    CLIENT_SATURATED,
    NOISY_NOTE,
    Table,
    lookup,
    mib,
    number,
    pinning_note,
    rate_cell,
)
from .headline import headline_table
from .oidc import oidc_table
from .scep import scep_table
from .targets import targets_table


def build_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    tables.append(targets_table(results))
    headline = headline_table(results)
    if headline.rows:
        tables.append(headline)
    inprocess = results.get("inprocess")
    if inprocess and "key_types" in inprocess:
        p = inprocess["parameters"]
        t = Table(
            "In-process: sign_body (token + CSR + build + sign + SQLite), issuances/s",
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
                    rate_cell(full, "per_repetition"),
                    rate_cell(normal, "per_repetition"),
                    number(r["crypto"]["limit_per_s"]),
                    number(full.get("ratio_to_crypto_limit"), 3),
                    number(normal.get("ratio_to_crypto_limit"), 3),
                    number(full.get("latency_ms", {}).get("p50"), 2),
                    number(full.get("latency_ms", {}).get("p99"), 2),
                    number(full.get("non_crypto_us_per_issuance"), 0),
                    number(full.get("cpu_us_per_issuance"), 0),
                    number(full.get("crypto_share_of_cpu"), 3),
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
                    number(k["token_verify_us"]),
                    number(k["csr_verify_us"]),
                    number(k["issuer_sign_us"]),
                    number(k["sum_us"]),
                    number(k["limit_per_s"]),
                ]
            )
        tables.append(c)
    breakdown = results.get("breakdown")
    if breakdown and "stages" in breakdown:
        total = float(breakdown["authority_sign_us"])
        total_cpu = breakdown.get("authority_sign_cpu_us")
        b = Table(
            f"Where the time goes: sign_body, {breakdown['key_type']} issuer,"
            f" sync={breakdown['sync']}, µs per issuance",
            ["function called by sign_body", "µs", "share", "CPU µs", "CPU share"],
        )

        def cpu_cells(value: Any) -> list[str]:
            if value is None or not total_cpu:
                return ["-", "-"]
            return [number(value), f"{100 * float(value) / float(total_cpu):.0f}%"]

        for stage in breakdown["stages"]:
            name = f"  └ {stage['name']}" if stage["parent"] else stage["name"]
            value = float(stage["us"])
            b.rows.append(
                [
                    name,
                    number(value),
                    f"{100 * value / total:.0f}%",
                    *cpu_cells(stage.get("cpu_us")),
                ]
            )
        b.rows.append(
            [
                "unaccounted (whole - top-level rows)",
                number(breakdown["unaccounted_us"]),
                "",
                number(breakdown.get("unaccounted_cpu_us")),
                "",
            ]
        )
        b.rows.append(["sign_body (timed whole)", number(total), "100%", *cpu_cells(total_cpu)])
        b.notes.append("└ rows are part of the row above them")
        b.notes.append(
            "CPU µs: the process's user + system time (fsync waits left out, the kernel's"
            " work for them counted); store.record_certificate's is the store's CPU per issuance"
        )
        tables.append(b)
    profile = results.get("profile")
    if profile and "groups" in profile:
        pr = Table(
            f"cProfile of sign_body ({profile['key_type']}, sync=full), cumulative µs"
            " per issuance incl. profiler overhead",
            ["function", "µs"],
        )
        for group in profile["groups"]:
            pr.rows.append([group["function"], number(group["cumulative_us_per_issuance"])])
        pr.notes.append(f"full listing: {Path(profile['text']).name} next to this file")
        tables.append(pr)
    tables.extend(host_tables(results))
    return tables


def host_tables(results: dict[str, Any]) -> list[Table]:
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
                        rate_cell(level, "per_round"),
                        number(lat.get("p50"), 2),
                        number(lat.get("p99"), 2),
                        number(level.get("p99_over_p50"), 2),
                        number(level.get("server_cpu_ms_per_issuance"), 2),
                        number(level.get("server_cpu_cores"), 2),
                        number(level.get("client_cpu_ms_per_issuance"), 2),
                        number(level.get("client_cpu_cores"), 2),
                        number(level.get("ratio_to_inprocess"), 3),
                    ]
                )
                if (level.get("client_cpu_cores") or 0) > CLIENT_SATURATED:
                    saturated.append(f"{name} c={level['concurrency']}")
            server = host["server"]
            memory_notes.append(
                f"{name} {mib(server.get('peak_rss_kib'))}"
                f" (idle after start {mib(server.get('idle_rss_kib'))})"
            )
        params = http["parameters"]
        h.notes.append(
            f"median of {params['rounds']} rounds per host and level (interleaved); requests ="
            " timed requests over all rounds"
        )
        pinning = params.get("pinning")
        h.notes.append(
            f"server peak RSS (VmHWM): {', '.join(memory_notes)};"
            f" in-process P-256 reference {number(ref.get('issuances_per_s'))}/s"
            f" ({ref.get('source')})"
        )
        h.notes.append(
            pinning_note(pinning)
            if pinning
            else "not pinned: server and load generator share every CPU"
        )
        if saturated:
            h.notes.append(
                f"the load generator used more than {CLIENT_SATURATED:.0%} of a CPU at"
                f" {', '.join(saturated)}: there it may be the limit, not the server"
            )
        ratio = lookup(http, "ratios", "raw_over_quart")
        if ratio is not None:
            h.notes.append(f"raw ÷ quart (best levels): {number(ratio, 3)}")
        if any("~" in row[3] for row in h.rows):
            h.notes.append(NOISY_NOTE)
        tables.append(h)
    accounts = results.get("accounts")
    if accounts and accounts.get("kinds"):
        tables.append(accounts_table(accounts))
    scep = results.get("scep")
    if scep and scep.get("inprocess"):
        tables.append(scep_table(scep))
    oidc = results.get("oidc")
    if oidc and oidc.get("inprocess"):
        tables.append(oidc_table(oidc))
    cloud = results.get("cloud")
    if cloud and cloud.get("inprocess"):
        tables.append(cloud_table(cloud))
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
                1.0
                if row["workers"] == 1
                else lookup(scaling, "ratios", f"{row['workers']}_over_1")
            )
            shares = level.get("worker_cpu_shares")
            s.rows.append(
                [
                    str(row["workers"]),
                    rate_cell(level, "per_round"),
                    number(ratio, 3),
                    number(lat.get("p50"), 2),
                    number(lat.get("p99"), 2),
                    number(level.get("server_cpu_cores"), 2),
                    number(level.get("client_cpu_cores"), 2),
                    " / ".join(f"{x:.2f}" for x in shares) if shares else "-",
                    mib(row["server"].get("peak_rss_kib")),
                    number(level.get("ratio_to_inprocess"), 3),
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
                    number(step["mean_ms"], 2),
                    number(step["p50_ms"], 2),
                    number(step["p99_ms"], 2),
                    f"{100 * float(step['share']):.0f}%",
                ]
            )
        lat = run["latency_ms"]
        a.rows.append(
            ["whole enrolment", "", "", number(lat["p50"], 2), number(lat["p99"], 2), "100%"]
        )
        cpu = run.get("cpu_ms_per_enrolment", {})
        a.notes.append(
            f"{number(run['enrolments_per_s'], 2)} enrolments/s"
            f" ({run['enrolments']} in {number(run['elapsed_s'])} s, one at a time)"
        )
        a.notes.append(
            f"CPU ms per enrolment: swtpm {number(cpu.get('swtpm'))}, devid server"
            f" {number(cpu.get('server'))}, agent side (this process) {number(cpu.get('client'))}"
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
                    number(rss / 1024, 1),
                    f"{(rss - first) / 1024:+.1f}",
                    number((point["hwm_kib"] or 0) / 1024, 1),
                    number(point["chunk_issuances_per_s"]),
                    number(point["db_bytes"] / 1048576, 1),
                ]
            )
        k.notes.append(
            f"start {mib(lookup(soak, 'start', 'rss_kib'))}, middle"
            f" {mib(lookup(soak, 'middle', 'rss_kib'))}, end {mib(lookup(soak, 'end', 'rss_kib'))};"
            f" growth {number((soak.get('growth_kib') or 0) / 1024, 2)} MiB"
            f" (end ÷ start {number(soak.get('growth_ratio'), 3)}), second half"
            f" {number((soak.get('second_half_growth_kib') or 0) / 1024, 2)} MiB ="
            f" {number((soak.get('second_half_growth_kib_per_10k') or 0) / 1024, 2)} MiB per 10,000"
        )
        if soak.get("stopped_early"):
            k.notes.append(f"stopped early: {soak['stopped_early']}")
        tables.append(k)
    device = attestation.get("device_attest")
    if device and device.get("enrolment"):
        tables.append(device_attest_table(device, attestation["parameters"]))
    acme = results.get("acme")
    if acme and acme.get("servers_by_label"):
        tables.extend(acme_tables(acme))
    fleet = results.get("fleet")
    if fleet and fleet.get("phases"):
        tables.extend(fleet_tables(fleet))
    return tables


def device_attest_table(device: dict[str, Any], params: dict[str, Any]) -> Table:
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
            number(enrolment["enrolments_per_s"], 2),
            number(lat.get("p50"), 1),
            number(lat.get("p99"), 1),
            number(cpu.get("server"), 1),
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
                number(level["validations_per_s"]),
                number(vlat.get("p50"), 1),
                number(vlat.get("p99"), 1),
                number(level.get("server_cpu_ms_per_validation"), 1),
            ]
        )
    tpm = enrolment.get("tpm_ms_mean", {})
    d.notes.append(
        "enrolment: newAccount (existing), newOrder, authorization, TPM key + TPM2_Certify,"
        " challenge, finalize (TPM-signed CSR), download; TPM ms per enrolment: "
        + ", ".join(f"{name} {number(ms, 1)}" for name, ms in tpm.items())
        + f"; CPU ms per enrolment: swtpm {number(cpu.get('swtpm'))}, agent side"
        f" {number(cpu.get('client'))}"
    )
    d.notes.append(
        "validation: only the challenge response (CBOR, AK chain, TPM2_Certify signature,"
        " bound identity, inventory), attestation objects prepared first; each came back valid"
    )
    return d
