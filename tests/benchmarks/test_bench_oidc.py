"""The oidc section end to end with tiny counts: every ID token of both kinds, in process
and through both hosts, gets a certificate from the TLS CA naming the token's email; the
provider is fetched once per CA and never while timing; the figures, the crypto-only
costs, the JWK comparison and the table are there and sane (no timing thresholds)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.cli import build_parser, main
from benchmarks.report import render_text
from benchmarks.sections.oidc import (
    CLIENT_ID,
    CRYPTO_STEPS,
    DISCOVERY_PATH,
    HOSTS,
    JWK,
    JWKS_PATH,
    KINDS,
    check_certificates,
    serving_provider,
)
from engine.jose import parse_compact, public_key_from_jwk
from tests.benchmarks.test_benchmarks_smoke import gone, positive

REQUESTS = 4
CALLS = 3
LEVELS = (1, 2)
FETCHES = {DISCOVERY_PATH: 1, JWKS_PATH: 1}

Run = tuple[int, dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("oidc-out")
    argv = [
        "--only",
        "oidc",
        "--quick",
        "--quiet",
        "--rounds",
        "1",
        "--repetitions",
        "2",
        "--oidc-concurrency",
        ",".join(map(str, LEVELS)),
        "--oidc-requests",
        str(REQUESTS),
        "--oidc-n",
        str(CALLS),
        "--no-plot",
        "--out",
        str(out),
        "--tmp",
        str(out / "tmp"),
    ]
    status = main(argv)
    return status, json.loads((out / "latest.json").read_text())


def test_in_process_every_kind_is_issued_and_split(run: Run) -> None:
    status, data = run
    assert status == 0, data.get("errors")
    assert data["sections"] == ["oidc"] and data["errors"] == {}
    oidc = data["oidc"]
    assert oidc["provisioner"] == "bench-sso" and oidc["client_id"] == CLIENT_ID
    inprocess = oidc["inprocess"]
    # The first request made the CA fetch discovery and keys once; none after it.
    assert inprocess["provider_fetches_at_warmup"] == FETCHES
    assert inprocess["provider_fetches_after_warmup"] == {DISCOVERY_PATH: 0, JWKS_PATH: 0}
    kinds = inprocess["kinds"]
    assert set(kinds) == {*KINDS, JWK}
    for kind, figures in kinds.items():
        assert figures["calls"] == CALLS * 2
        assert positive(figures["requests_per_s"]) and positive(figures["cpu_us_per_request"])
        assert len(figures["cpu_us_per_repetition"]) == 2
        crypto = figures["crypto"]
        for step in CRYPTO_STEPS:
            assert positive(crypto[f"{step}_us"]), (kind, step)
        assert crypto["sum_us"] == pytest.approx(
            sum(crypto[f"{step}_us"] for step in CRYPTO_STEPS), abs=0.05
        )
        assert figures["crypto_us"] == crypto["sum_us"]
        assert figures["rest_us"] == pytest.approx(
            figures["cpu_us_per_request"] - crypto["sum_us"], abs=0.2
        )
        assert positive(figures["ratio_to_jwk"])
    assert kinds[JWK]["ratio_to_jwk"] == 1.0


def test_every_request_through_both_hosts_is_issued(run: Run) -> None:
    _, data = run
    oidc = data["oidc"]
    assert oidc["provider_fetches_during_rounds"] == {DISCOVERY_PATH: 0, JWKS_PATH: 0}
    hosts = oidc["hosts"]
    assert set(hosts) == set(HOSTS)
    for host, result in hosts.items():
        assert result["provider_fetches_at_first_request"] == FETCHES
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
                assert level["crypto_us"] == oidc["inprocess"]["kinds"][kind]["crypto_us"]
            assert figures["best"]["concurrency"] in LEVELS
        server = result["server"]
        assert gone(server["pid"]) and server["exit_status"] == 0


def test_the_table_shows_every_place_and_kind(run: Run) -> None:
    _, data = run
    text = render_text(data)
    assert "OIDC provisioner" in text
    lines = text.splitlines()
    for kind in (*KINDS, JWK):
        assert any("in process" in line and kind in line for line in lines), kind
    for where in ("quart host", "raw host"):
        for kind in KINDS:
            assert any(where in line and kind in line for line in lines), (where, kind)
    assert "crypto-only µs, rs256: token verify" in text
    assert "0 during the timed rounds" in text


def test_the_provider_serves_its_keys_and_signs_verifiable_tokens() -> None:
    with serving_provider() as provider:
        discovery = httpx.get(provider.url + DISCOVERY_PATH).json()
        assert discovery["issuer"] == provider.url
        keys = httpx.get(discovery["jwks_uri"]).json()["keys"]
        assert {key["alg"] for key in keys} == {"RS256", "ES256"}
        for alg in ("RS256", "ES256"):
            first = provider.token(alg, "ada@example.com", "ada")
            second = provider.token(alg, "ada@example.com", "ada")
            jws = parse_compact(first)
            (jwk,) = [key for key in keys if key["kid"] == jws.header["kid"]]
            assert jwk["alg"] == alg == jws.alg
            claims = jws.verify(public_key_from_jwk(jwk))
            assert claims["iss"] == provider.url and claims["aud"] == CLIENT_ID
            assert claims["email"] == "ada@example.com" and claims["email_verified"] is True
            assert claims["exp"] > claims["iat"]
            # One-time tokens: each has a jti of its own.
            assert parse_compact(second).claims()["jti"] != claims["jti"]
        assert provider.counts() == FETCHES


NOW = datetime.now(UTC)


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _leaf(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], email: str) -> x509.Certificate:
    key, issuer = ca
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_a_reply_is_refused_unless_from_the_tls_ca_for_the_tokens_email() -> None:
    tls, other = _ca("TLS CA"), _ca("TLS CA")  # the same name, another key
    emails = ["ada@example.com", "bob@example.com"]
    good = [_leaf(tls, email) for email in emails]
    assert check_certificates(good, emails, tls[1]) == []
    forged = check_certificates([good[0], _leaf(other, emails[1])], emails, tls[1])
    assert len(forged) == 1 and "not issued by the TLS CA" in forged[0]
    stranger = check_certificates([good[0], _leaf(tls, "eve@example.com")], emails, tls[1])
    assert len(stranger) == 1 and "none of the tokens' emails" in stranger[0]
    twice = check_certificates([good[0], _leaf(tls, emails[0])], emails, tls[1])
    assert len(twice) == 1 and "two certificates name" in twice[0]
    assert check_certificates(good[:1], emails, tls[1])[0] == "1 certificates for 2 requests"


def test_help_names_the_section_and_its_options() -> None:
    text = build_parser().format_help()
    for wanted in ("oidc", "--oidc-concurrency", "--oidc-requests", "--oidc-n", "--oidc-host"):
        assert wanted in text, wanted
