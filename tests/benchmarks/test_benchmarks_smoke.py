"""The benchmark suite runs end to end with tiny counts and writes well-formed results.

No timing thresholds: only structure, positive figures, ratios in a sane range,
and that every process the suite started (servers, their workers, swtpm) is gone.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cli import build_parser, main
from benchmarks.common import BenchmarkError, Progress, create_ca, percentile, write_password_file
from benchmarks.procs import children, descendants, tree_memory
from benchmarks.servers import ServerProcess
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
    "--workers",
    "1,2",
    "--scaling-concurrency",
    "4",
    "--scaling-requests",
    "10",
    "--attest-n",
    "3",
    "--soak",
    "60",
    "--soak-every",
    "20",
    "--soak-concurrency",
    "2",
    "--device-attest-n",
    "2",
    "--device-attest-validations",
    "4",
    "--device-attest-concurrency",
    "1,2",
    "--acme-concurrency",
    "2",
    "--acme-orders",
    "4",
    "--fleet",
    "3",
    "--accounts-requests",
    "6",
    "--scep-concurrency",
    "2",
    "--scep-requests",
    "4",
    "--scep-n",
    "3",
    "--oidc-concurrency",
    "2",
    "--oidc-requests",
    "4",
    "--oidc-n",
    "3",
    "--cloud-concurrency",
    "2",
    "--cloud-requests",
    "4",
    "--cloud-n",
    "3",
]

Run = tuple[int, Path, dict[str, Any]]


def swtpm_usable() -> bool:
    from benchmarks.sections.attestation import prerequisites

    return not prerequisites()


def pebble_usable() -> bool:
    from benchmarks.pebble import pebble_missing

    return pebble_missing() is None


def matplotlib_usable() -> bool:
    from benchmarks.report.plot import missing

    return missing() is None


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def sane_ratio(value: Any, high: float = 1.5) -> bool:
    return positive(value) and value < high


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it has exited all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("bench-out")
    status = main([*ARGS, "--out", str(out), "--tmp", str(tmp_path_factory.mktemp("bench-tmp"))])
    return status, out, json.loads((out / "latest.json").read_text())


def test_run_succeeds_and_writes_files(run: Run) -> None:
    status, out, data = run
    assert status == 0, data.get("errors")
    assert data["errors"] == {}
    allowed = (set() if pebble_usable() else {"acme"}) | (
        set() if swtpm_usable() else {"attestation"}
    )
    assert set(data["skipped"]) <= allowed, data["skipped"]
    stamped = list(out.glob("bench-*.json"))
    assert len(stamped) == 1
    assert json.loads(stamped[0].read_text()) == data
    markdown = (out / "latest.md").read_text()
    for header in ("| figure |", "| issuer |", "| host |", "| workers |", "| issued |"):
        assert header in markdown, header
    assert list(out.glob("profile-*.pstats")) and list(out.glob("profile-*.txt"))


def test_top_level_and_machine(run: Run) -> None:
    _, _, data = run
    assert data["schema"] == "devid-bench/2"
    assert data["mode"] == "quick"
    assert data["sections"] == [
        "inprocess",
        "breakdown",
        "http",
        "accounts",
        "scep",
        "oidc",
        "cloud",
        "scaling",
        "attestation",
        "soak",
        "acme",
        "fleet",
        "profile",
    ]
    assert positive(data["duration_s"])
    machine = data["machine"]
    assert positive(machine["cpu_count"])
    for key in ("python", "cryptography", "platform", "openssl", "sqlite"):
        assert isinstance(machine[key], str) and machine[key]


def test_inprocess_figures(run: Run) -> None:
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


def test_breakdown_and_profile(run: Run) -> None:
    _, _, data = run
    breakdown = data["breakdown"]
    stages = {stage["name"]: stage for stage in breakdown["stages"]}
    for name in ("parse_csr", "JWKProvisioner.authorize_sign", "store.record_certificate"):
        assert name in stages, sorted(stages)
    assert stages["store.record_certificate"]["parent"] == "CA.record_issued"
    assert all(positive(stage["us"]) for stage in stages.values())
    assert positive(breakdown["authority_sign_us"])
    assert positive(breakdown["top_level_total_us"])
    # CPU beside the wall time: the store's CPU per issuance is reported on its own.
    assert all(positive(stage["cpu_us"]) for stage in stages.values())
    assert positive(breakdown["authority_sign_cpu_us"])
    assert breakdown["store_cpu_us"] == stages["store.record_certificate"]["cpu_us"]
    groups = {g["function"]: g["cumulative_us_per_issuance"] for g in data["profile"]["groups"]}
    assert positive(groups["sign_body (total)"])
    assert positive(groups["token: route_credential (types read it)"])


def test_http_figures_for_each_host(run: Run) -> None:
    _, _, data = run
    http = data["http"]
    assert positive(http["inprocess_reference"]["issuances_per_s"])
    assert set(http["hosts"]) == {"quart", "raw"}
    for name, host in http["hosts"].items():
        assert host["host"] == name and host["workers"] == 1
        (level,) = host["levels"]
        assert level["concurrency"] == 2
        assert level["rounds"] == 2 and level["requests"] == 20
        assert level["ok"] == 20 and level["errors"] == 0 and not level["timed_out"]
        assert positive(level["issuances_per_s"])
        assert positive(level["latency_ms"]["p50"]) and positive(level["latency_ms"]["p99"])
        assert level["p99_over_p50"] >= 1
        assert sane_ratio(level["ratio_to_inprocess"])
        assert positive(level["client_cpu_ms_per_issuance"])
        assert host["best"]["concurrency"] == 2
        server = host["server"]
        assert positive(server["peak_rss_kib"]) and positive(server["idle_rss_kib"])
        assert server["exit_status"] is not None
        assert all(gone(pid) for pid in server["pids"])  # stopped and reaped
    assert positive(http["ratios"]["raw_over_quart"])
    pinning = http["parameters"]["pinning"]
    if len(os.sched_getaffinity(0)) >= 2:
        assert pinning["server_cpus"] != pinning["client_cpus"]
    else:
        assert pinning is None


def test_scaling_figures_and_workers_stopped(run: Run) -> None:
    _, _, data = run
    scaling = data["scaling"]
    rows = {row["workers"]: row for row in scaling["workers"]}
    assert set(rows) == {1, 2}
    for workers, row in rows.items():
        (level,) = row["levels"]
        assert level["concurrency"] == 4 and level["ok"] == 20 and level["errors"] == 0
        assert positive(level["issuances_per_s"])
        server = row["server"]
        # one process; or the supervisor and its workers
        assert server["processes"] == (1 if workers == 1 else workers + 1)
        assert positive(server["peak_rss_kib"]) and positive(server["tree_peak_rss_kib"])
        assert all(gone(pid) for pid in server["pids"])
    assert rows[2]["server"]["supervisor_peak_rss_kib"] is not None
    assert len(rows[2]["levels"][0]["worker_cpu_shares"]) == 2
    assert sane_ratio(scaling["ratios"]["2_over_1"], 3.0)


def test_attestation_figures_per_ek_type(run: Run) -> None:
    if not swtpm_usable():
        pytest.skip("swtpm or tpm2-pytss missing: the section is skipped, as checked above")
    _, out, data = run
    attestation = data["attestation"]
    assert attestation["parameters"]["ek_types"] == ["rsa", "ecc"]
    assert set(attestation["ek_types"]) == {"rsa", "ecc"}
    for ek, result in attestation["ek_types"].items():
        assert result["ek_type"] == ek
        assert result["enrolments"] == 3
        assert positive(result["enrolments_per_s"])
        steps = {step["step"]: step for step in result["steps"]}
        assert list(steps) == [
            "open TPM + read EK",
            "create AK",
            "POST /attest",
            "ActivateCredential",
            "POST /secret",
            "check chain",
        ]
        assert all(positive(step["mean_ms"]) for step in steps.values())
        assert sum(result["wall_share"].values()) == pytest.approx(1.0, abs=0.01)
        for party in ("swtpm", "server", "client"):
            assert positive(result["cpu_ms_per_enrolment"][party]), party
        assert result["server_cpu_ms_per_enrolment"] == result["cpu_ms_per_enrolment"]["server"]
        split = result["server_cpu_split_ms"]
        assert set(split) == {"tls_connection", "http_host", "service"}
        assert positive(result["service_work"]["cpu_ms_per_enrolment"])
        assert sum(split.values()) == pytest.approx(result["server_cpu_ms_per_enrolment"], abs=0.01)
        assert positive(result["tls_connection"]["server_cpu_ms_per_new_connection_with_request"])
        assert positive(result["crypto_ms_per_enrolment"])
        operations = result["crypto_ops_us"]
        assert any(name.startswith("MakeCredential") for name in operations)
        assert any(name.startswith("EK certificate signature") for name in operations)
        assert all(positive(us) for us in operations.values())
        assert gone(result["swtpm"]["pid"]) and gone(result["server"]["pid"])
    markdown = (out / "latest.md").read_text()
    assert "(rsa EK, ecc AK)" in markdown and "(ecc EK, ecc AK)" in markdown


def test_device_attest_figures(run: Run) -> None:
    if not swtpm_usable():
        pytest.skip("swtpm or tpm2-pytss missing: the section is skipped, as checked above")
    _, out, data = run
    device = data["attestation"]["device_attest"]
    assert device["ek_type"] == "ecc"  # the ECC swtpm when both are measured
    assert "device_attest" not in data["attestation"]["ek_types"]["ecc"]
    assert device["directory"].endswith("/acme/devices/directory")
    enrolment = device["enrolment"]
    assert enrolment["enrolments"] == 2
    assert positive(enrolment["enrolments_per_s"])
    assert positive(enrolment["latency_ms"]["p50"])
    assert all(positive(enrolment["tpm_ms_mean"][step]) for step in enrolment["tpm_ms_mean"])
    assert set(enrolment["tpm_ms_mean"]) == {"open TPM", "create key", "certify", "sign CSR"}
    assert sum(enrolment["wall_share"].values()) == pytest.approx(1.0, abs=0.01)
    levels = device["validation_levels"]
    assert [level["concurrency"] for level in levels] == [1, 2]
    for level in levels:
        assert level["validations"] == 4 and level["ok"] == 4 and level["errors"] == 0
        assert positive(level["validations_per_s"])
        assert positive(level["latency_ms"]["p50"])
    assert device["best_validations"]["concurrency"] in (1, 2)
    assert device["server_cpu_concurrency"] == 1
    assert device["server_cpu_ms_per_validation"] == levels[0]["server_cpu_ms_per_validation"]
    assert positive(device["crypto_ms_per_validation"])
    assert len(device["crypto_ops_us"]) == 3
    assert positive(device["verification_work"]["cpu_ms_per_validation"])
    assert sum(device["server_cpu_split_ms"].values()) == pytest.approx(
        device["server_cpu_ms_per_validation"], abs=0.01
    )
    assert all(positive(us) for us in device["crypto_ops_us"].values())
    markdown = (out / "latest.md").read_text()
    assert "ACME device-attest-01 against swtpm" in markdown
    assert "device-attest-01 validations/s (server)" in markdown


def test_soak_figures(run: Run) -> None:
    _, _, data = run
    soak = data["soak"]
    assert soak["completed"] and soak["issued"] == 60 and soak["errors"] == 0
    assert [p["issued"] for p in soak["checkpoints"]] == [0, 20, 40, 60]
    assert all(positive(p["rss_kib"]) for p in soak["checkpoints"])
    assert soak["middle"]["issued"] in (20, 40)
    for key in ("growth_kib", "second_half_growth_kib", "second_half_growth_kib_per_10k"):
        assert isinstance(soak[key], int | float), key
    assert positive(soak["growth_ratio"])
    assert gone(soak["server"]["pid"])


def test_acme_figures_devid_and_pebble_side_by_side(run: Run) -> None:
    _, out, data = run
    if not pebble_usable():
        assert "acme" not in data  # no figures
        assert "pebble" in data["skipped"]["acme"]
        assert "acme not measured" in (out / "latest.md").read_text()
        return
    acme = data["acme"]
    parameters = acme["parameters"]
    assert parameters["concurrency"] == [2] and parameters["orders_per_round"] == [4]
    assert parameters["rounds"] == 2
    assert parameters["pebble_environment"]["PEBBLE_VA_NOSLEEP"] == "1"
    assert parameters["pebble_environment"]["PEBBLE_VA_ALWAYS_VALID"] == "0"
    servers = acme["servers_by_label"]
    assert list(servers) == ["devid-quart", "devid-raw", "pebble"]
    for label, server in servers.items():
        (level,) = server["levels"]
        assert level["concurrency"] == 2 and level["rounds"] == 2
        assert level["orders"] == 8 and level["ok"] == 8 and level["errors"] == 0, level
        assert not level["timed_out"]
        assert positive(level["orders_per_s"])
        assert positive(level["latency_ms"]["p50"]) and level["p99_over_p50"] >= 1
        assert all(positive(ms) for ms in level["steps_mean_ms"].values()), label
        # validated for real: the server's validator fetched every token from the responder
        assert level["validator_fetches_per_order"] >= 1, label
        assert level["polls_per_order"]["authorization"] >= 1
        assert level["nonce_retries"] == 0
        assert positive(level["client_cpu_ms_per_order"])
        assert level["new_account_ms"]["count"] == 4  # one account per connection and round
        assert server["best"]["concurrency"] == 2
        assert server["issuer_key"]
        assert positive(server["server"]["peak_rss_kib"])
        assert server["server"]["exit_status"] is not None
        assert gone(server["server"]["pid"])
    assert servers["pebble"]["kind"] == "pebble" and servers["pebble"]["host"] is None
    assert servers["pebble"]["environment"]["PEBBLE_WFE_NONCEREJECT"] == "0"
    assert servers["pebble"]["levels"][0]["validator_fetches_per_order"] >= 3
    assert {s["server"] for s in acme["servers"]} == set(servers)
    assert set(acme["ratios"]) == {"quart", "raw"}
    for ratio in acme["ratios"].values():
        assert positive(ratio["best"]) and positive(ratio["by_concurrency"]["2"])
    assert acme["ratio_host"] == "raw"
    assert acme["ratio_devid_to_pebble"] == acme["ratios"]["raw"]["best"]
    assert acme["setup"]["responder_served"] > 0 and acme["setup"]["responder_refused"] == 0
    assert gone(acme["setup"]["dns_pid"])
    # Server CPU per order devid ÷ pebble, the crypto an order needs, the per-step split.
    assert acme["server_cpu"]["concurrency"] == 2
    assert positive(acme["server_cpu"]["ratio_devid_to_pebble"])
    assert set(acme["server_cpu"]["by_host"]) == {"quart", "raw"}
    assert positive(acme["crypto"]["ms_per_order"]) and positive(acme["crypto"]["crypto_to_cpu"])
    assert set(acme["crypto"]["by_server"]) == set(servers)
    for label, server in servers.items():
        split = server["step_cpu"]
        assert split["orders"] == parameters["step_cpu_orders"] > 0, label
        assert positive(split["whole_ms"]), label
        assert set(split["ms_per_step"]) == set(split["wall_ms_per_step"])
    markdown = (out / "latest.md").read_text()
    assert "| server | concurrency | orders | orders/s |" in markdown
    assert "ACME: mean ms per step of an order at c=2" in markdown
    assert "ACME orders/s devid ÷ pebble (raw host)" in markdown


def test_targets_table_shows_every_target_first(run: Run) -> None:
    """Each of issue 13's targets has a row, measured or saying why not, before any
    other table."""
    from benchmarks.report.targets import (
        ACCOUNT_CERT,
        ACME_CPU,
        ACME_RATE,
        AK_ENROLMENT,
        DEVICE_ATTEST,
        IN_PROCESS,
        RAW_HOST,
        targets_table,
    )

    _, out, data = run
    table = targets_table(data)
    labels = [row[0] for row in table.rows]
    for target in (IN_PROCESS, RAW_HOST, ACME_CPU, ACME_RATE, DEVICE_ATTEST):
        assert target.label in labels, target.label
    assert any(label.startswith("AK enrolment") for label in labels)
    assert any(label.startswith(ACCOUNT_CERT.label) for label in labels)
    in_process = table.rows[labels.index(IN_PROCESS.label)]
    cpu = data["inprocess"]["key_types"]["P-256"]["sync_full"]["cpu_us_per_issuance"]
    assert in_process[1] == f"{cpu:,.0f} µs" and in_process[5] in ("yes", "no")
    assert AK_ENROLMENT.text == "≤ 1.5 ms" and ACME_RATE.text == "≥ 1.2"
    markdown = (out / "latest.md").read_text()
    assert markdown.index("Server CPU per operation") < markdown.index("Headline ratios")


def test_headline_names_every_ratio(run: Run) -> None:
    _, out, _ = run
    markdown = (out / "latest.md").read_text()
    for figure in (
        "in-process ÷ crypto limit",
        "raw host ÷ in-process",
        "quart host ÷ in-process",
        "raw 2 workers ÷ 1 worker",
        "soak: RSS growth",
        "ACME orders/s devid ÷ pebble",
    ):
        assert figure in markdown, figure
    if swtpm_usable():
        assert "device-attest-01 enrolments/s" in markdown


def test_plot(run: Run) -> None:
    _, out, data = run
    if not matplotlib_usable():
        assert "matplotlib" in data["plot"]["skipped"]
        return
    assert data["plot"] == {"file": "throughput.png"}
    png = (out / "throughput.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "![throughput against concurrency](throughput.png)" in (out / "latest.md").read_text()


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


def test_workers_left_by_a_killed_supervisor_are_stopped(tmp_path: Path) -> None:
    init = create_ca(tmp_path / "ca", KeyType.P256)
    password = write_password_file(tmp_path / "password")
    server = ServerProcess(tmp_path / "ca", password, tmp_path, "raw", workers=2)
    try:
        server.wait_ready(init.root_path, timeout=30)
        workers = children(server.pid)
        assert len(workers) == 2
        assert tree_memory(server.pid).workers("VmHWM")
        os.kill(server.pid, signal.SIGKILL)  # the supervisor dies without stopping them
        server.process.wait(timeout=10)
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(pid) for pid in workers)


def test_descendants_are_found_through_proc() -> None:
    code = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
    code += "'import time; time.sleep(30)']); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not children(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        (child,) = children(parent.pid)
        assert descendants(parent.pid) == [child]
        memory = tree_memory(parent.pid)
        assert set(memory.per_process) == {parent.pid, child}
        assert memory.total("VmRSS") == sum(m["VmRSS"] for m in memory.per_process.values())
    finally:
        for pid in descendants(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_live_line_only_on_a_terminal() -> None:
    terminal = FakeTerminal(tty=True)
    progress = Progress(stream=terminal)
    progress.status("requests 1/10", force=True)
    progress("a step")
    progress.status("requests 2/10", force=True)
    progress.done()
    text = terminal.getvalue()
    assert "\rrequests" not in text  # every live line starts with its elapsed time
    assert "] requests 1/10" in text and "] requests 2/10" in text
    assert "] a step\n" in text
    assert text.endswith("\r")  # the live line was cleared at the end

    log = FakeTerminal(tty=False)
    quiet = Progress(stream=log)
    quiet.status("requests 1/10", force=True)
    quiet("a step")
    assert log.getvalue().count("\n") == 1 and "requests" not in log.getvalue()


def test_help_explains_every_figure() -> None:
    text = build_parser().format_help()
    for figure in (
        "headline ratios",
        "sync=full/s",
        "crypto limit/s",
        "full÷limit",
        "non-crypto µs",
        "p99 ms",
        "p99÷p50",
        "server CPU ms/iss",
        "server cores",
        "host÷in-process",
        "server peak RSS",
        "÷ 1 worker",
        "worker CPU shares",
        "enrolments/s",
        "CPU ms per enrolment",
        "growth",
        "orders/s",
        "polls/order",
        "÷ pebble",
        "device enrolments/s",
        "validations/s",
        "~ after a rate",
        "throughput.png",
        "--quick",
        "--out",
        "--only",
        "--host",
        "--no-pin",
        "--workers",
        "--scaling-concurrency",
        "--attest-n",
        "--soak",
        "--soak-every",
        "--acme-concurrency",
        "--acme-orders",
        "--acme-host",
        "--device-attest-n",
        "--device-attest-validations",
        "--device-attest-concurrency",
        "--cloud-n",
        "--cloud-host",
        "--no-plot",
    ):
        assert figure in text, figure


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
