"""The quart host's REST API over real HTTPS: what a client of the CA can rely on."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.jose import jwk_from_public_key
from hosts.core.authority import Authority
from hosts.core.init import init_data_dir
from hosts.core.secrets import Password
from plugins.jwk import mint_token
from tests.conftest import CA, PASSWORD, RunningServer, new_csr, provisioner_of

from .helpers import (
    Issued,
    assert_json_error,
    client,
    issue,
    issue_in_process,
    issued_from,
    load_pem,
    running_server,
)


def sans_of(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(str(name.value) for name in ext.value)


def public_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def openssl_verify(root: Path, issued: Issued, workdir: Path) -> subprocess.CompletedProcess[str]:
    chain = issued.write_chain(workdir / f"{issued.serial}.chain.pem")
    leaf = workdir / f"{issued.serial}.leaf.pem"
    leaf.write_text(issued.response["crt"])
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(leaf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def revoke_token(server: RunningServer, serial: int) -> str:
    return server.token(str(serial), path="/1.0/revoke")


async def fetch_crl(server: RunningServer) -> x509.CertificateRevocationList:
    """The TLS CA's CRL: what JWK tokens get is issued by the TLS CA."""
    async with client(server) as http:
        r = await http.get("/crl/tls")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(r.content)


# --- discovery ----------------------------------------------------------------------


async def test_health_answers_ok(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_http2_is_negotiated_and_serves_the_api(quart_server: RunningServer) -> None:
    server = quart_server
    _, _, csr_pem = new_csr("h2.example.com")
    async with client(server, http2=True) as http:
        health = await http.get("/health")
        signed = await http.post(
            "/1.0/sign", json={"csr": csr_pem, "ott": server.token("h2.example.com")}
        )
    assert health.http_version == "HTTP/2"
    assert health.json() == {"status": "ok"}
    assert signed.http_version == "HTTP/2"
    assert signed.status_code == 201, signed.text
    assert load_pem(signed.json()["crt"]).subject.rfc4514_string() == "CN=h2.example.com"


async def test_roots_pem_is_the_root_certificate_file(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get("/roots.pem")
    assert r.status_code == 200
    assert r.text == server.root_path.read_text()


async def test_root_by_fingerprint_returns_the_root(server: RunningServer) -> None:
    root = x509.load_pem_x509_certificate(server.root_path.read_bytes())
    sha256 = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    colon_upper = ":".join(sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    async with client(server) as http:
        by_hex = await http.get(f"/root/{sha256}")
        by_colons = await http.get(f"/root/{colon_upper}")
    assert by_hex.status_code == 200
    assert load_pem(by_hex.json()["ca"]) == root
    assert by_colons.status_code == 200
    assert by_colons.json() == by_hex.json()


@pytest.mark.parametrize("fingerprint", ["00" * 32, "nothex", "ab" * 31])
async def test_root_by_wrong_fingerprint_is_404_json(
    server: RunningServer, fingerprint: str
) -> None:
    async with client(server) as http:
        r = await http.get(f"/root/{fingerprint}")
    assert_json_error(r, 404)


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _all_keys(v)}
    return set()


async def test_provisioners_show_public_fields_only(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.get("/provisioners")
    assert r.status_code == 200
    listing = r.json()["provisioners"]
    assert [p["name"] for p in listing] == ["admin", "acme", "devices"]
    admin = listing[0]
    assert admin["type"] == "JWK"
    assert [p["type"] for p in listing[1:]] == ["ACME", "ACME"]
    assert admin["key"] == jwk_from_public_key(provisioner_of(server.authority).public_key)
    keys = _all_keys(listing)
    assert "d" not in keys, "a private JWK member leaked"
    assert not keys & {"encrypted_key", "encryptedKey", "password", "eab_keys", "eabKeys"}
    assert "secrets/" not in r.text
    assert PASSWORD.decode() not in r.text


# --- signing --------------------------------------------------------------------------


async def test_sign_returns_a_chain_that_openssl_verifies(
    server: RunningServer, tmp_path: Path
) -> None:
    issued = await issue(server, "device-1.example.com", ["device-1.example.com", "10.0.0.7"])
    body = issued.response
    assert set(body) >= {"crt", "ca", "certChain"}
    assert body["certChain"][0] == body["crt"]
    assert body["certChain"][1:] == [body["ca"]]
    assert issued.certificate.subject.rfc4514_string() == "CN=device-1.example.com"
    assert sans_of(issued.certificate) == ["10.0.0.7", "device-1.example.com"]
    result = openssl_verify(server.root_path, issued, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


async def test_a_token_signs_only_once(server: RunningServer) -> None:
    token = server.token("once.example.com")
    _, _, first_csr = new_csr("once.example.com")
    _, _, second_csr = new_csr("once.example.com")
    async with client(server) as http:
        first = await http.post("/1.0/sign", json={"csr": first_csr, "ott": token})
        replay = await http.post("/1.0/sign", json={"csr": second_csr, "ott": token})
    assert first.status_code == 201
    assert_json_error(replay, 401)


async def test_sign_honours_a_requested_lifetime(server: RunningServer) -> None:
    _, _, csr_pem = new_csr("short.example.com")
    before = datetime.now(UTC).replace(microsecond=0)
    async with client(server) as http:
        r = await http.post(
            "/1.0/sign",
            json={"csr": csr_pem, "ott": server.token("short.example.com"), "notAfter": "8h"},
        )
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    assert before + timedelta(hours=8) <= cert.not_valid_after_utc <= after + timedelta(hours=8)
    assert cert.not_valid_before_utc <= after


async def test_sign_honours_rfc3339_bounds(server: RunningServer) -> None:
    # notBefore within the provisioner's skew (5m by default) of the CA's clock
    not_before = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=3)
    not_after = not_before + timedelta(hours=2)
    plus_two = not_after.astimezone(timezone(timedelta(hours=2)))
    _, _, csr_pem = new_csr("window.example.com")
    async with client(server) as http:
        r = await http.post(
            "/1.0/sign",
            json={
                "csr": csr_pem,
                "ott": server.token("window.example.com"),
                "notBefore": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "notAfter": plus_two.isoformat(),
            },
        )
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    assert cert.not_valid_before_utc == not_before
    assert cert.not_valid_after_utc == not_after


def _rfc3339(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "bounds",
    [
        pytest.param(lambda: {"notAfter": "1m"}, id="shorter-than-minimum"),
        pytest.param(lambda: {"notAfter": "31d"}, id="longer-than-maximum"),
        pytest.param(lambda: {"notAfter": "20000d"}, id="beyond-the-CA"),
        pytest.param(
            lambda: {
                "notBefore": _rfc3339(timedelta(minutes=3)),
                "notAfter": _rfc3339(timedelta(days=40)),
            },
            id="rfc3339-window-too-long",
        ),
    ],
)
async def test_sign_refuses_lifetimes_outside_the_provisioner_limits(
    server: RunningServer, bounds: Callable[[], dict[str, str]]
) -> None:
    _, _, csr_pem = new_csr("limits.example.com")
    body = {"csr": csr_pem, "ott": server.token("limits.example.com"), **bounds()}
    count = server.authority.stores.certificates.count_certificates()
    async with client(server) as http:
        r = await http.post("/1.0/sign", json=body)
    assert assert_json_error(r, 403)["error"] == "forbidden"
    assert server.authority.stores.certificates.count_certificates() == count


# --- renewal ------------------------------------------------------------------------------


async def test_renew_over_mtls_keeps_the_identity_with_a_new_serial(
    server: RunningServer, tmp_path: Path
) -> None:
    current = await issue(server, "renew.example.com", ["renew.example.com", "renew.internal"])
    pem_file = current.write_client_pem(tmp_path / "client.pem")
    async with client(server, cert=pem_file) as http:
        r = await http.post("/1.0/renew")
    assert r.status_code == 201, r.text
    renewed = issued_from(current.key, r.json())
    new, old = renewed.certificate, current.certificate
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert sans_of(new) == sans_of(old) == ["renew.example.com", "renew.internal"]
    assert public_der(new) == public_der(old)
    assert new.not_valid_after_utc >= old.not_valid_after_utc
    stored = server.authority.stores.certificates.get_certificate(format(new.serial_number, "x"))
    assert stored is not None and stored.der == renewed.der
    result = openssl_verify(server.root_path, renewed, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_renew_without_a_client_certificate_is_401(server: RunningServer) -> None:
    async with client(server) as http:
        r = await http.post("/1.0/renew")
    assert_json_error(r, 401)


async def test_renew_with_a_revoked_certificate_is_401(
    server: RunningServer, tmp_path: Path
) -> None:
    current = await issue(server, "revoked.example.com")
    pem_file = current.write_client_pem(tmp_path / "client.pem")
    count = server.authority.stores.certificates.count_certificates()
    async with client(server) as http:
        revoked = await http.post(
            "/1.0/revoke",
            json={"serial": str(current.serial), "ott": revoke_token(server, current.serial)},
        )
    assert revoked.status_code == 200, revoked.text
    async with client(server, cert=pem_file) as http:
        r = await http.post("/1.0/renew")
    assert_json_error(r, 401)
    assert server.authority.stores.certificates.count_certificates() == count


async def test_renew_with_a_certificate_from_another_devid_ca_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    other_dir = tmp_path / "other-ca"
    init_data_dir(other_dir, Password(b"another password", "test"))
    other = Authority.load(other_dir, b"another password")
    try:
        foreign = issue_in_process(other, b"another password", "renew.example.com")
    finally:
        other.close()
    # Same names everywhere: only the signatures tell the two CAs apart.
    assert foreign.certificate.issuer == server.authority.issuers["tls"].certificate.subject
    pem_file = foreign.write_client_pem(tmp_path / "foreign.pem")
    count = server.authority.stores.certificates.count_certificates()
    try:
        async with client(server, cert=pem_file) as http:
            r = await http.post("/1.0/renew")
    except httpx.TransportError:
        pass  # the TLS handshake refused the certificate: fine
    else:
        assert_json_error(r, 401)
    assert server.authority.stores.certificates.count_certificates() == count


# --- revocation ------------------------------------------------------------------------------


async def test_revoke_by_the_issuing_provisioner_lists_the_serial_in_the_crl(
    server: RunningServer,
) -> None:
    issued = await issue(server, "lost-laptop.example.com")
    async with client(server) as http:
        r = await http.post(
            "/1.0/revoke",
            json={
                "serial": str(issued.serial),
                "ott": revoke_token(server, issued.serial),
                "reasonCode": 1,
                "reason": "stolen",
            },
        )
        pem = await http.get("/crl/tls", params={"format": "pem"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}
    crl = await fetch_crl(server)
    tls_ca = server.authority.issuers["tls"].certificate
    assert crl.issuer == tls_ca.subject
    assert crl.is_signature_valid(tls_ca.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert pem.status_code == 200
    pem_crl = x509.load_pem_x509_crl(pem.content)
    assert pem_crl.get_revoked_certificate_by_serial_number(issued.serial) is not None


async def test_revoke_with_the_certificate_itself_over_mtls(
    server: RunningServer, tmp_path: Path
) -> None:
    issued = await issue(server, "self-revoke.example.com")
    pem_file = issued.write_client_pem(tmp_path / "client.pem")
    async with client(server, cert=pem_file) as http:
        r = await http.post("/1.0/revoke", json={"serial": str(issued.serial)})
    assert r.status_code == 200, r.text
    record = server.authority.stores.certificates.get_certificate(format(issued.serial, "x"))
    assert record is not None and record.status == "revoked"
    crl = await fetch_crl(server)
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None


async def test_revoke_over_mtls_with_a_different_certificate_is_401(
    server: RunningServer, tmp_path: Path
) -> None:
    victim = await issue(server, "victim.example.com")
    attacker = await issue(server, "attacker.example.com")
    pem_file = attacker.write_client_pem(tmp_path / "attacker.pem")
    async with client(server, cert=pem_file) as http:
        r = await http.post("/1.0/revoke", json={"serial": str(victim.serial)})
    assert_json_error(r, 401)
    record = server.authority.stores.certificates.get_certificate(format(victim.serial, "x"))
    assert record is not None and record.status == "active"


async def test_revoke_needs_a_credential(server: RunningServer) -> None:
    issued = await issue(server, "no-credential.example.com")
    async with client(server) as http:
        r = await http.post("/1.0/revoke", json={"serial": str(issued.serial)})
    assert_json_error(r, 401)


async def test_a_revocation_token_names_one_serial(server: RunningServer) -> None:
    first = await issue(server, "first.example.com")
    second = await issue(server, "second.example.com")
    async with client(server) as http:
        r = await http.post(
            "/1.0/revoke",
            json={"serial": str(second.serial), "ott": revoke_token(server, first.serial)},
        )
    assert_json_error(r, 401)
    record = server.authority.stores.certificates.get_certificate(format(second.serial, "x"))
    assert record is not None and record.status == "active"


def add_jwk_provisioner(data_dir: Path, name: str) -> ec.EllipticCurvePrivateKey:
    """Append a second JWK provisioner (public key only) to devid.toml; return its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(
        {
            "type": "JWK",
            "name": name,
            "issuer": "tls",
            "key": jwk_from_public_key(key.public_key()),
        }
    )
    path.write_text(tomli_w.dumps(config))
    return key


async def test_revocation_is_bound_to_the_issuing_provisioner(ca: CA) -> None:
    other_key = add_jwk_provisioner(ca.data_dir, "other")
    async with running_server(ca.data_dir, ca.password) as server:

        def other_token(subject: str, path: str) -> str:
            return mint_token(
                other_key,
                provisioner="other",
                subject=subject,
                audience=f"{server.url}{path}",
                now=datetime.now(UTC),
                jti=uuid.uuid4().hex,
                sans=[subject],
            )

        by_admin = await issue(server, "admin-issued.example.com")
        key, _, csr_pem = new_csr("other-issued.example.com")
        async with client(server) as http:
            signed = await http.post(
                "/1.0/sign",
                json={"csr": csr_pem, "ott": other_token("other-issued.example.com", "/1.0/sign")},
            )
            assert signed.status_code == 201, signed.text
            by_other = issued_from(key, signed.json())

            foreign = await http.post(
                "/1.0/revoke",
                json={
                    "serial": str(by_admin.serial),
                    "ott": other_token(str(by_admin.serial), "/1.0/revoke"),
                },
            )
            own = await http.post(
                "/1.0/revoke",
                json={
                    "serial": str(by_other.serial),
                    "ott": other_token(str(by_other.serial), "/1.0/revoke"),
                },
            )
        assert_json_error(foreign, 401)
        assert own.status_code == 200, own.text
        admin_record = server.authority.stores.certificates.get_certificate(
            format(by_admin.serial, "x")
        )
        assert admin_record is not None and admin_record.status == "active"


async def test_revoking_twice_is_409(server: RunningServer) -> None:
    issued = await issue(server, "twice.example.com")
    async with client(server) as http:
        first = await http.post(
            "/1.0/revoke",
            json={"serial": str(issued.serial), "ott": revoke_token(server, issued.serial)},
        )
        second = await http.post(
            "/1.0/revoke",
            json={"serial": str(issued.serial), "ott": revoke_token(server, issued.serial)},
        )
    assert first.status_code == 200, first.text
    assert_json_error(second, 409)


async def test_revoking_an_unknown_serial_is_404(server: RunningServer) -> None:
    serial = 0x1234567890ABCDEF
    async with client(server) as http:
        r = await http.post(
            "/1.0/revoke", json={"serial": str(serial), "ott": revoke_token(server, serial)}
        )
    assert_json_error(r, 404)
