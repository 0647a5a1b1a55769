"""The accounts section end to end with tiny counts: every request of both kinds issues a
certificate, and the figures, the crypto-only costs and the table are there and sane (no
timing thresholds)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.cli import build_parser, main
from benchmarks.report import render_text
from benchmarks.sections.accounts import CRYPTO_STEPS, KINDS
from tests.benchmarks.test_benchmarks_smoke import gone, positive

REQUESTS = 6
LEVELS = (1, 2)

Run = tuple[int, dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("accounts-out")
    argv = [
        "--only",
        "accounts",
        "--quick",
        "--quiet",
        "--rounds",
        "1",
        "--accounts-concurrency",
        ",".join(map(str, LEVELS)),
        "--accounts-requests",
        str(REQUESTS),
        "--no-plot",
        "--out",
        str(out),
        "--tmp",
        str(out / "tmp"),
    ]
    status = main(argv)
    return status, json.loads((out / "latest.json").read_text())


def test_every_request_of_both_kinds_issues_a_certificate(run: Run) -> None:
    status, data = run
    assert status == 0, data.get("errors")
    assert data["sections"] == ["accounts"] and data["errors"] == {}
    accounts = data["accounts"]
    assert set(accounts["kinds"]) == set(KINDS)
    for kind in KINDS:
        levels = accounts["kinds"][kind]["levels"]
        assert [level["concurrency"] for level in levels] == list(LEVELS)
        for level in levels:
            assert level["ok"] == REQUESTS and level["errors"] == 0, level
            assert not level["timed_out"] and level["first_error"] is None
            latency = level["latency_ms"]
            assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
            assert positive(level["certificates_per_s"])
            assert level["server_cpu_us_per_certificate"] >= 0
            assert positive(level["client_cpu_us_per_certificate"])
    assert accounts["renewal_certificates"] == max(LEVELS)
    assert accounts["account"]["provisioner"] == "account:bench-wifi"
    assert accounts["account"]["audience"].endswith("/1.0/sign")
    assert gone(accounts["server"]["pid"]) and accounts["server"]["exit_status"] == 0


def test_crypto_only_costs_and_the_headline_keys(run: Run) -> None:
    _, data = run
    for kind in KINDS:
        figures = data["accounts"]["kinds"][kind]
        crypto = figures["crypto"]
        for step in CRYPTO_STEPS[kind]:
            assert positive(crypto[f"{step}_us"]), (kind, step)
        assert crypto["sum_us"] == pytest.approx(
            sum(crypto[f"{step}_us"] for step in CRYPTO_STEPS[kind]), abs=0.05
        )
        # What the targets table reads: the best level's figures.
        assert figures["concurrency"] in LEVELS
        assert figures["server_cpu_us_per_certificate"] >= 0
        assert figures["crypto_us_per_certificate"] == crypto["sum_us"]
    # An issuance verifies three signatures and makes one; a renewal verifies one.
    assert (
        data["accounts"]["kinds"]["issuance"]["crypto"]["sum_us"]
        > data["accounts"]["kinds"]["renewal"]["crypto"]["sum_us"]
    )


def test_the_report_shows_both_kinds(run: Run) -> None:
    _, data = run
    text = render_text(data)
    assert "Account certificates through the raw host" in text
    assert "account certificate over mTLS: server CPU per certificate: issuance" in text
    assert "account certificate over mTLS: server CPU per certificate: renewal" in text


def test_help_names_the_section_and_its_options() -> None:
    text = build_parser().format_help()
    for wanted in ("accounts", "--accounts-concurrency", "--accounts-requests", "certs/s"):
        assert wanted in text, wanted
