"""The cloud section end to end with tiny counts: every instance of each cloud, in
process and through both hosts, gets one certificate from the TLS CA naming it; the
figures, the crypto-only costs, the JWK comparison and the table are there and sane (no
timing thresholds); a reply from another CA or for another instance fails the check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.cli import main
from benchmarks.report import render_text
from benchmarks.sections.cloud import HOSTS, JWK, KINDS, check_certificates
from tests.benchmarks.test_benchmarks_smoke import gone, positive

REQUESTS = 4
CALLS = 3
LEVELS = (1, 2)
STEPS = ("identity_verify", "csr_verify", "certificate_sign")

Run = tuple[int, dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("cloud-out")
    argv = [
        "--only", "cloud", "--quick", "--quiet", "--rounds", "1", "--repetitions", "2",
        "--cloud-concurrency", ",".join(map(str, LEVELS)), "--cloud-requests", str(REQUESTS),
        "--cloud-n", str(CALLS), "--no-plot", "--out", str(out), "--tmp", str(out / "tmp"),
    ]  # fmt: skip
    status = main(argv)
    return status, json.loads((out / "latest.json").read_text())


def test_in_process_every_kind_is_issued_and_split(run: Run) -> None:
    status, data = run
    assert status == 0, data.get("errors")
    assert data["sections"] == ["cloud"] and data["errors"] == {}
    kinds = data["cloud"]["inprocess"]["kinds"]
    assert set(kinds) == {*KINDS, JWK}
    for kind, figures in kinds.items():
        assert figures["calls"] == CALLS * 2
        assert positive(figures["requests_per_s"]) and positive(figures["cpu_us_per_request"])
        crypto = figures["crypto"]
        for step in STEPS:
            assert positive(crypto[f"{step}_us"]), (kind, step)
        assert crypto["sum_us"] == pytest.approx(
            sum(crypto[f"{step}_us"] for step in STEPS), abs=0.05
        )
        assert positive(figures["ratio_to_jwk"])
    assert kinds[JWK]["ratio_to_jwk"] == 1.0
    # Azure's request needs more signature checks than AWS's, AWS's more than GCP's.
    verify = {kind: kinds[kind]["crypto"]["identity_verify_us"] for kind in KINDS}
    assert verify["gcp"] < verify["aws"] < verify["azure"]


def test_every_request_through_both_hosts_is_issued(run: Run) -> None:
    _, data = run
    hosts = data["cloud"]["hosts"]
    assert set(hosts) == set(HOSTS)
    for host, result in hosts.items():
        assert set(result["kinds"]) == set(KINDS)
        for kind, figures in result["kinds"].items():
            levels = figures["levels"]
            assert [level["concurrency"] for level in levels] == list(LEVELS)
            for level in levels:
                assert level["ok"] == REQUESTS and level["errors"] == 0, (host, kind, level)
                assert level["server_cpu_us_per_request"] >= 0
        server = result["server"]
        assert gone(server["pid"]) and server["exit_status"] == 0


def test_the_table_shows_every_place_and_kind(run: Run) -> None:
    _, data = run
    text = render_text(data)
    assert "Cloud provisioners" in text
    lines = text.splitlines()
    for kind in (*KINDS, JWK):
        assert any("in process" in line and f" {kind} " in line for line in lines), kind
    for where in ("quart host", "raw host"):
        for kind in KINDS:
            assert any(where in line and f" {kind} " in line for line in lines), (where, kind)
    assert "crypto-only µs, azure: identity verify" in text


NOW = datetime.now(UTC)


def _certificate(
    issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Name, subject: str, ca: bool = False
) -> x509.Certificate:
    key = issuer_key if ca else ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .sign(issuer_key, hashes.SHA256())
    )


def test_a_reply_is_refused_unless_from_the_tls_ca_for_an_instance_of_the_run() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TLS CA")])
    key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    tls_ca = _certificate(key, name, "TLS CA", ca=True)
    names = ["vm-1", "i-0123456789abcdef0"]
    good = [_certificate(key, name, n) for n in names]
    assert check_certificates(good, names, tls_ca) == []
    forged = [_certificate(other_key, name, n) for n in names]
    assert any("not issued by the TLS CA" in p for p in check_certificates(forged, names, tls_ca))
    stranger = [good[0], _certificate(key, name, "vm-9")]
    assert any("no instance of the run" in p for p in check_certificates(stranger, names, tls_ca))
    twice = [good[0], good[0]]
    assert any("two certificates" in p for p in check_certificates(twice, names, tls_ca))
