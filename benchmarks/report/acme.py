"""The ACME section's tables: orders per server and level, and ms per step of an order."""

from __future__ import annotations

from typing import Any

from .format import NOISY_NOTE, Table, lookup, mib, number, rate_cell

ACME_STEPS = ("newOrder", "authorization", "challenge", "validation", "finalize", "download")


def acme_tables(acme: dict[str, Any]) -> list[Table]:
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
            ratio = lookup(ratios, server.get("host"), "by_concurrency", str(level["concurrency"]))
            c.rows.append(
                [
                    label,
                    str(level["concurrency"]),
                    f"{level['ok']}{errors}",
                    rate_cell({"issuances_per_s": level["orders_per_s"], **level}, "per_round"),
                    number(lat.get("p50"), 1),
                    number(lat.get("p99"), 1),
                    number(level.get("server_cpu_ms_per_order"), 2),
                    number(level.get("server_cpu_cores"), 2),
                    number(level.get("client_cpu_ms_per_order"), 2),
                    number(sum(polls.values()) if polls else None, 2),
                    number(ratio, 3) if server["kind"] == "devid" else "",
                ]
            )
    fetches = []
    for label, server in servers.items():
        values = [lv.get("validator_fetches_per_order") for lv in server["levels"]]
        known = [float(v) for v in values if isinstance(v, int | float)]
        if known:
            fetches.append(f"{label} {number(max(known), 1)}")
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
    c.notes.append(f"pebble {lookup(acme, 'setup', 'pebble_version') or '?'} with {env}")
    c.notes.append(
        f"issuing keys: {issuers}; peak RSS: "
        + ", ".join(
            f"{label} {mib(lookup(server, 'server', 'peak_rss_kib'))}"
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
                *(number(steps.get(step), 1) for step in ACME_STEPS),
                number(lookup(level, "latency_ms", "mean"), 1),
                number(lookup(level, "new_account_ms", "p50"), 1),
            ]
        )
    s.notes.append(
        "validation = from the challenge response until the authorization reads valid (the"
        " server's DNS lookup, its fetch from the responder, recording the result, the polls);"
        " finalize includes polling the order until valid"
    )
    tables = [c, s] if s.rows else [c]
    split = _step_cpu_table(acme)
    if split.rows:
        tables.append(split)
    return tables


def _step_cpu_table(acme: dict[str, Any]) -> Table:
    """Server CPU per step of an order (one order at a time), and the crypto it needs."""
    servers: dict[str, Any] = acme["servers_by_label"]
    crypto = acme.get("crypto") or {}
    orders = lookup(acme, "parameters", "step_cpu_orders")
    t = Table(
        f"ACME: server CPU ms per step of an order, {orders} orders one at a time",
        ["server", *ACME_STEPS, "whole", "crypto ms", "crypto ÷ CPU", "CPU ÷ pebble"],
    )
    ratios = lookup(acme, "server_cpu", "by_host") or {}
    for label, server in servers.items():
        split = server.get("step_cpu") or {}
        steps = split.get("ms_per_step") or {}
        mine = lookup(crypto, "by_server", label) or {}
        ratio = lookup(ratios, server.get("host"), str(mine.get("concurrency")))
        t.rows.append(
            [
                label,
                *(number(steps.get(step), 2) for step in ACME_STEPS),
                number(split.get("whole_ms"), 2),
                number(mine.get("ms_per_order"), 2),
                number(mine.get("crypto_to_cpu"), 2),
                number(ratio, 2) if server["kind"] == "devid" else "",
            ]
        )
    units = crypto.get("units") or {}
    signs = ", ".join(f"{k} {number(v, 0)} µs" for k, v in (units.get("sign_us") or {}).items())
    t.notes.append(
        "each server's own CPU (every thread, /proc/PID/task/*/schedstat) read by the client"
        " at each step boundary; the validation a server starts when the challenge is"
        " answered counts in the step it runs in (mostly validation)"
    )
    t.notes.append(
        "crypto ms: what one order needs, timed with cryptography alone in this run: an ES256"
        f" verification per request ({number(units.get('es256_verify_us'), 0)} µs), the CSR's"
        f" check ({number(units.get('csr_verify_us'), 0)} µs), one certificate signature"
        f" ({signs}); crypto ÷ CPU and CPU ÷ pebble use the server CPU per order of the"
        " highest concurrency level"
    )
    return t
