"""The scep section end to end with tiny counts: every request of every kind, in process
and through both hosts, gets a SUCCESS CertRep for the client's key, and the figures, the
crypto-only costs and the table are there and sane (no timing thresholds)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.cli import build_parser, main
from benchmarks.report import render_text
from benchmarks.sections.scep import CRYPTO_STEPS, HOSTS, KINDS
from tests.benchmarks.test_benchmarks_smoke import gone, positive

REQUESTS = 4
CALLS = 3
LEVELS = (1, 2)

Run = tuple[int, dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("scep-out")
    argv = [
        "--only",
        "scep",
        "--quick",
        "--quiet",
        "--rounds",
        "1",
        "--scep-concurrency",
        ",".join(map(str, LEVELS)),
        "--scep-requests",
        str(REQUESTS),
        "--scep-n",
        str(CALLS),
        "--no-plot",
        "--out",
        str(out),
        "--tmp",
        str(out / "tmp"),
    ]
    status = main(argv)
    return status, json.loads((out / "latest.json").read_text())


def test_in_process_every_kind_is_answered_and_split(run: Run) -> None:
    status, data = run
    assert status == 0, data.get("errors")
    assert data["sections"] == ["scep"] and data["errors"] == {}
    scep = data["scep"]
    assert scep["provisioner"] == "bench-mdm"
    kinds = scep["inprocess"]["kinds"]
    assert set(kinds) == set(KINDS)
    for kind in KINDS:
        figures = kinds[kind]
        assert figures["calls"] == CALLS * scep["parameters"]["inprocess_repetitions"]
        assert positive(figures["requests_per_s"]) and positive(figures["cpu_us_per_request"])
        crypto = figures["crypto"]
        for step in CRYPTO_STEPS[kind]:
            assert positive(crypto[f"{step}_us"]), (kind, step)
        assert crypto["sum_us"] == pytest.approx(
            sum(crypto[f"{step}_us"] for step in CRYPTO_STEPS[kind]), abs=0.05
        )
        assert figures["crypto_us"] == crypto["sum_us"]
        assert figures["rest_us"] == pytest.approx(
            figures["cpu_us_per_request"] - crypto["sum_us"], abs=0.2
        )
    # A new enrolment needs the issuer's signature; the answers from the store do not.
    assert "certificate_sign_us" in kinds["pkcsreq"]["crypto"]
    assert "certificate_sign_us" not in kinds["certpoll"]["crypto"]


def test_every_request_through_both_hosts_is_answered(run: Run) -> None:
    _, data = run
    hosts = data["scep"]["hosts"]
    assert set(hosts) == set(HOSTS)
    for host, result in hosts.items():
        assert set(result["kinds"]) == set(KINDS)
        for kind, figures in result["kinds"].items():
            levels = figures["levels"]
            assert [level["concurrency"] for level in levels] == list(LEVELS)
            for level in levels:
                assert level["ok"] == REQUESTS and level["errors"] == 0, (host, kind, level)
                assert not level["timed_out"] and level["first_error"] is None
                latency = level["latency_ms"]
                assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
                assert positive(level["requests_per_s"])
                assert level["server_cpu_us_per_request"] >= 0
                assert positive(level["client_cpu_us_per_request"])
            assert figures["best"]["concurrency"] in LEVELS
        server = result["server"]
        assert gone(server["pid"]) and server["exit_status"] == 0


def test_the_table_shows_every_place_and_kind(run: Run) -> None:
    _, data = run
    text = render_text(data)
    assert "SCEP PKIOperation" in text
    for where in ("in process", "quart host", "raw host"):
        for kind in KINDS:
            assert any(where in line and kind in line for line in text.splitlines()), (where, kind)
    assert "crypto-only µs, pkcsreq: request verify" in text


def test_help_names_the_section_and_its_options() -> None:
    text = build_parser().format_help()
    for wanted in ("scep", "--scep-concurrency", "--scep-requests", "--scep-n", "req/s"):
        assert wanted in text, wanted
