"""The acme section's derived figures from given levels (no servers): server CPU per order
devid ÷ pebble, the crypto one order needs beside it, the per-step split's table, and
the server CPU meter the split reads."""

from __future__ import annotations

import os
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID

from benchmarks.report.acme import acme_tables
from benchmarks.sections.acme import (
    _server_cpu_ratios,
    crypto_per_order,
    task_cpu_seconds,
)


def _level(concurrency: int, cpu_ms: float, requests: float = 6.0) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "ok": 10,
        "errors": 0,
        "orders_per_s": 100.0,
        "server_cpu_ms_per_order": cpu_ms,
        "requests_per_order": requests,
    }


def _servers() -> dict[str, dict[str, Any]]:
    return {
        "devid-raw": {
            "label": "devid-raw",
            "kind": "devid",
            "host": "raw",
            "issuer_key": "EC secp256r1",
            "levels": [_level(1, 9.0), _level(8, 7.0)],
        },
        "pebble": {
            "label": "pebble",
            "kind": "pebble",
            "host": None,
            "issuer_key": "RSA-2048",
            "levels": [_level(1, 4.0, 8.0), _level(8, 3.5, 8.0)],
        },
    }


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = Name([NameAttribute(NameOID.COMMON_NAME, "x.test")])
    csr = CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.DER)


def test_server_cpu_ratio_is_the_raw_hosts_at_the_highest_common_level() -> None:
    figures = _server_cpu_ratios(_servers(), "pebble", "raw")
    assert figures["by_host"] == {"raw": {"1": 2.25, "8": 2.0}}
    assert figures["concurrency"] == 8
    assert figures["ratio_devid_to_pebble"] == 2.0
    assert _server_cpu_ratios({"devid-raw": _servers()["devid-raw"]}, "pebble", "raw") == {}


def test_crypto_per_order_counts_a_verification_per_request() -> None:
    crypto = crypto_per_order(_servers(), _csr())
    units = crypto["units"]
    assert units["es256_verify_us"] > 0 and units["csr_verify_us"] > 0
    assert set(units["sign_us"]) == {"EC secp256r1", "RSA-2048"}
    raw = crypto["by_server"]["devid-raw"]
    expected = (6 * units["es256_verify_us"] + units["csr_verify_us"]) / 1e3
    expected += units["sign_us"]["EC secp256r1"] / 1e3
    assert abs(raw["ms_per_order"] - expected) < 0.01
    assert raw["concurrency"] == 8 and raw["server_cpu_ms_per_order"] == 7.0
    assert abs(raw["crypto_to_cpu"] - raw["ms_per_order"] / 7.0) < 0.01
    assert crypto["by_server"]["pebble"]["verifications_per_order"] == 8.0
    assert crypto["ms_per_order"] == raw["ms_per_order"]
    assert crypto["crypto_to_cpu"] == raw["crypto_to_cpu"]


def test_the_step_table_shows_the_split_and_the_crypto() -> None:
    servers = _servers()
    steps = ("newOrder", "authorization", "challenge", "validation", "finalize", "download")
    for server in servers.values():
        server["step_cpu"] = {
            "orders": 10,
            "ms_per_step": dict.fromkeys(steps, 1.0),
            "whole_ms": 6.0,
        }
    acme = {
        "servers_by_label": servers,
        "parameters": {
            "rounds": 1,
            "concurrency": [1, 8],
            "step_cpu_orders": 10,
            "pinning": None,
        },
        "ratios": {},
        "server_cpu": _server_cpu_ratios(servers, "pebble", "raw"),
        "crypto": crypto_per_order(servers, _csr()),
    }
    split = next(t for t in acme_tables(acme) if "per step of an order" in t.title)
    rows = {row[0]: row for row in split.rows}
    assert rows["devid-raw"][7] == "6.00"  # whole
    assert rows["devid-raw"][-1] == "2.00"  # CPU ÷ pebble at c=8
    assert rows["pebble"][-1] == ""


def test_task_cpu_seconds_counts_this_process() -> None:
    before = task_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert task_cpu_seconds(os.getpid()) - before >= 0.04
    assert task_cpu_seconds(2**22 + 12345) == 0.0  # no such process
