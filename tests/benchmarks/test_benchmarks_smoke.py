"""The benchmark suite runs end to end with tiny counts and writes well-formed results.

No timing thresholds: only structure, positive figures, and ratios in (0, 1.5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import build_parser, main
from benchmarks.common import BenchmarkError, create_ca, percentile
from benchmarks.http import ServerProcess
from engine.keys import KeyType

ARGS = [
    "--quick",
    "--quiet",
    "--profile",
    "--key-type",
    "P-256",
    "-n",
    "20",
    "--repetitions",
    "2",
    "--concurrency",
    "2",
    "--requests",
    "10",
    "--rounds",
    "2",
]


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def sane_ratio(value: Any) -> bool:
    return positive(value) and value < 1.5


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-out")
    status = main([*ARGS, "--out", str(out), "--tmp", str(tmp_path_factory.mktemp("bench-tmp"))])
    return status, out, json.loads((out / "latest.json").read_text())


def test_run_succeeds_and_writes_files(run: tuple[int, Path, dict[str, Any]]) -> None:
    status, out, data = run
    assert status == 0, data.get("errors")
    assert data["errors"] == {}
    stamped = list(out.glob("bench-*.json"))
    assert len(stamped) == 1
    assert json.loads(stamped[0].read_text()) == data
    markdown = (out / "latest.md").read_text()
    assert "| issuer |" in markdown and "| concurrency |" in markdown
    assert list(out.glob("profile-*.pstats")) and list(out.glob("profile-*.txt"))


def test_top_level_and_machine(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, data = run
    assert data["schema"] == "devid-bench/1"
    assert data["mode"] == "quick"
    assert data["sections"] == ["inprocess", "breakdown", "http", "profile"]
    assert positive(data["duration_s"])
    machine = data["machine"]
    assert positive(machine["cpu_count"])
    for key in ("python", "cryptography", "platform", "openssl", "sqlite"):
        assert isinstance(machine[key], str) and machine[key]


def test_inprocess_figures(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, data = run
    section = data["inprocess"]
    assert section["parameters"]["issuances_per_repetition"] == 20
    result = section["key_types"]["P-256"]
    crypto = result["crypto"]
    for key in ("token_verify_us", "csr_verify_us", "issuer_sign_us", "sum_us", "limit_per_s"):
        assert positive(crypto[key]), key
    assert crypto["token_algorithm"] == "ES256"
    for mode in ("full", "normal"):
        figures = result[f"sync_{mode}"]
        assert figures["synchronous_effective"] == mode
        assert positive(figures["issuances_per_s"])
        assert positive(figures["latency_ms"]["p50"]) and positive(figures["latency_ms"]["p99"])
        assert sane_ratio(figures["ratio_to_crypto_limit"])


def test_breakdown_and_profile(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, data = run
    breakdown = data["breakdown"]
    stages = {stage["name"]: stage for stage in breakdown["stages"]}
    for name in ("parse_csr", "JWKProvisioner.authorize_sign", "store.record_certificate"):
        assert name in stages, sorted(stages)
    assert stages["store.record_certificate"]["parent"] == "Authority.record_issued"
    assert all(positive(stage["us"]) for stage in stages.values())
    assert positive(breakdown["authority_sign_us"])
    assert positive(breakdown["top_level_total_us"])
    groups = {g["function"]: g["cumulative_us_per_issuance"] for g in data["profile"]["groups"]}
    assert positive(groups["Authority.sign (total)"])


def test_http_figures(run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, data = run
    http = data["http"]
    assert positive(http["inprocess_reference"]["issuances_per_s"])
    (level,) = http["levels"]
    assert level["concurrency"] == 2
    assert level["rounds"] == 2 and level["requests"] == 20
    assert level["ok"] == 20 and level["errors"] == 0 and not level["timed_out"]
    assert positive(level["issuances_per_s"])
    assert positive(level["latency_ms"]["p50"]) and positive(level["latency_ms"]["p99"])
    assert sane_ratio(level["ratio_to_inprocess"])
    server = http["server"]
    assert positive(server["peak_rss_kib"])
    assert server["exit_status"] is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server["pid"], 0)  # the server was stopped and reaped


def test_server_that_cannot_start_is_reported_and_reaped(tmp_path: Path) -> None:
    init = create_ca(tmp_path / "ca", KeyType.P256)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    server = ServerProcess(tmp_path / "ca", wrong, tmp_path, "quart")
    try:
        with pytest.raises(BenchmarkError, match="exited"):
            server.wait_ready(init.root_path, timeout=30)
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_help_explains_every_figure() -> None:
    text = build_parser().format_help()
    for figure in (
        "sync=full/s",
        "crypto limit/s",
        "full÷limit",
        "non-crypto µs",
        "p99 ms",
        "server CPU ms/iss",
        "server cores",
        "host÷in-process",
        "server peak RSS",
        "~ after a rate",
        "--quick",
        "--out",
        "--only",
    ):
        assert figure in text, figure


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
