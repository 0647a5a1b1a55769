"""The fleet section end to end with three devices: every device gets through every step,
and the figures and the estimate are there and sane (no timing thresholds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cli import main
from benchmarks.report.fleet import SCALES, estimate
from benchmarks.sections.fleet import PHASES
from tests.benchmarks.test_benchmarks_smoke import gone, positive

DEVICES = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("fleet-out")
    argv = ["--only", "fleet", "--fleet", str(DEVICES), "--fleet-concurrency", "2", "--quiet"]
    status = main([*argv, "--no-plot", "--out", str(out), "--tmp", str(out / "tmp")])
    return status, out, json.loads((out / "latest.json").read_text())


def test_every_device_completes_every_step(run: tuple[int, Path, dict[str, Any]]) -> None:
    status, _, data = run
    assert status == 0, data.get("errors")
    assert data["sections"] == ["fleet"] and data["errors"] == {}
    fleet = data["fleet"]
    assert fleet["devices"] == DEVICES and fleet["completed"] == DEVICES
    assert fleet["errors"] == 0
    assert [p["phase"] for p in fleet["phases"]] == list(PHASES)
    for phase in fleet["phases"]:
        assert phase["devices"] == DEVICES and phase["errors"] == 0, phase
        assert not phase["timed_out"] and phase["first_error"] is None
        assert positive(phase["elapsed_s"]) and positive(phase["devices_per_s"])
        assert phase["server_cpu_ms_per_device"] >= 0
        assert positive(phase["db_bytes_after"])
        for step in phase["steps"]:
            assert step["count"] == DEVICES, step
            assert 0 < step["p50_ms"] <= step["p99_ms"]
    steps = {(p["phase"], s["step"]) for p in fleet["phases"] for s in p["steps"]}
    for wanted in (
        ("enrol", "POST /attest"),
        ("enrol", "POST /secret"),
        ("order", "challenge"),
        ("order", "order"),
        ("accounts", "GET device/accounts"),
        ("accounts", "sign fleet-wifi"),
        ("accounts", "sign fleet-vpn"),
        ("renew", "renew device"),
        ("renew", "renew fleet-wifi"),
        ("renew", "renew fleet-vpn"),
    ):
        assert wanted in steps, wanted
    assert gone(fleet["server"]["pid"]) and fleet["server"]["exit_status"] == 0


def test_figures_per_device(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, data = run
    fleet = data["fleet"]
    assert positive(fleet["wall_s"]) and positive(fleet["devices_per_s"])
    assert positive(fleet["server_cpu_ms_per_device"])
    database = fleet["database"]
    assert database["after_flow_bytes"] > database["before_registration_bytes"] > 0
    assert positive(database["bytes_per_device"])
    assert "certificates" in {t["name"] for t in database["tables"]}
    handshakes = fleet["handshakes"]
    assert handshakes["connections"] == DEVICES
    for kind in ("tls", "mtls"):
        assert handshakes[kind]["count"] == DEVICES
        assert handshakes[kind]["server_cpu_us_per_connection"] >= 0
    phases = {p["phase"]: p for p in fleet["phases"]}
    assert phases["renew"]["connections_per_device"] == {"mtls": 3}
    assert phases["register"]["connections_per_device"] == {}
    for name in ("enrol", "order", "accounts", "renew"):
        assert phases[name]["server_cpu_us_per_operation_without_connections"] >= 0, name
    lifetimes = fleet["lifetimes_s"]
    for name in ("ak", "device", "fleet-wifi", "fleet-vpn", "device (renewed)"):
        assert positive(lifetimes[name]), name
    crl = fleet["crl"]
    assert crl["revoked_devices"] == DEVICES
    crls = crl["crls"]
    # A disabled device revokes its device certificate and its renewal, both account
    # certificates and their renewals, and its AK certificate.
    assert crls["agent"]["entries_per_revoked_device"] == 2
    assert crls["account"]["entries_per_revoked_device"] == 4
    assert crls["attestation"]["entries_per_revoked_device"] == 1
    for figures in crls.values():
        assert 30 < figures["bytes_per_entry"] < 100
        assert positive(figures["lifetime_s"])
    serving = crl["serving"]
    assert serving["before"]["entries"] == 0
    assert serving["after"]["entries"] == 4 * DEVICES
    assert serving["server_cpu_us_per_fetch_empty"] >= 0
    assert serving["server_cpu_us_per_entry"] >= 0


def test_report_and_estimate(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, out, data = run
    fleet = data["fleet"]
    small, _, large = (estimate(fleet, devices) for devices in SCALES)
    for key in ("cores_average", "cores_peak", "db_bytes_enrolled", "db_bytes_per_day"):
        value = small[key]
        assert isinstance(value, float) and value > 0, key
        assert large[key] == pytest.approx(value * SCALES[-1] / SCALES[0]), key
    assert large["cores_peak"] == pytest.approx(3 * (large["cores_average"] or 0))
    for issuer in ("agent", "account", "attestation"):
        assert positive(small[f"crl_{issuer}_bytes"])
    assert (small["cores_peak_crl_fetches"] or 0) >= 0
    markdown = (out / "latest.md").read_text()
    assert f"Fleet: {DEVICES:,} simulated devices through the whole flow" in markdown
    assert "Fleet: wall latency of each request" in markdown
    assert "ESTIMATE on paper from the measured per-device costs" in markdown
    assert "| 1,000,000 |" in markdown
