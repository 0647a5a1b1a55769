"""``devid cert list|show`` and the certificates ``devid device show`` lists, on a private
copy of a CA data directory (the command runs as a subprocess, like ``devid device``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509

from hosts.core.authority import Authority
from tests.conftest import CA

from .account_helpers import ek_of, issue_device_certificate, register_device
from .helpers import issue_in_process, run_devid


def devid(ca: CA, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``devid GROUP COMMAND --data DIR ARGS...``"""
    result = run_devid(*args[:2], "--data", ca.data_dir, *args[2:], check=False)
    if ok:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def hexed(cert: x509.Certificate) -> str:
    return f"0x{cert.serial_number:x}"


@attrs.frozen
class Issued:
    """A device certificate of laptop-1 (two days), then a TLS server certificate from the
    JWK provisioner (its default lifetime, a day at most), then the device's second device
    certificate, revoked."""

    device: x509.Certificate
    server: x509.Certificate
    revoked: x509.Certificate


@pytest.fixture
def issued(ca: CA) -> Iterator[Issued]:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        register_device(authority, "laptop-1", tags=["laptops"])
        device = issue_device_certificate(authority, "laptop-1").certificate
        server = issue_in_process(authority, ca.password, "www.example.com").certificate
        revoked = issue_device_certificate(authority, "laptop-1").certificate
        authority.revocation.admin_revoke(revoked.serial_number, 1, "stolen", "admin-token")
        yield Issued(device, server, revoked)
    finally:
        authority.close()


def serials(table: str) -> list[str]:
    """The first column of a listing's rows (its header left out)."""
    return [line.split()[0] for line in table.splitlines()[1:] if line.startswith("0x")]


def test_cert_list_prints_a_table_under_a_header_newest_first(ca: CA, issued: Issued) -> None:
    out = devid(ca, "cert", "list").stdout
    header = out.splitlines()[0].split()
    assert header[:4] == ["SERIAL", "STATUS", "ISSUER", "PROVISIONER"] and "SUBJECT" in header
    assert serials(out) == [hexed(issued.revoked), hexed(issued.server), hexed(issued.device)]
    row = next(line for line in out.splitlines() if line.startswith(hexed(issued.server)))
    assert row.split()[1:4] == ["active", "tls", "admin"]
    assert "CN=www.example.com" in row


def test_cert_list_filters(ca: CA, issued: Issued) -> None:
    ek = ek_of("laptop-1")
    on_device = [hexed(issued.revoked), hexed(issued.device)]
    assert serials(devid(ca, "cert", "list", "--device", ek).stdout) == on_device
    assert serials(devid(ca, "cert", "list", "--provisioner", "admin").stdout) == [
        hexed(issued.server)
    ]
    assert serials(devid(ca, "cert", "list", "--status", "revoked").stdout) == [
        hexed(issued.revoked)
    ]
    assert serials(devid(ca, "cert", "list", "--search", "www.EXAMPLE").stdout) == [
        hexed(issued.server)
    ]
    assert serials(devid(ca, "cert", "list", "--issuer", "tls").stdout) == [hexed(issued.server)]
    assert serials(devid(ca, "cert", "list", "--issuer", "account").stdout) == []
    assert devid(ca, "cert", "list", "--account", "corp-wifi").stdout.strip() == "no certificates"
    # The server certificate ends within a day; the device certificate in two.
    soon = serials(devid(ca, "cert", "list", "--expiring-within", "36h").stdout)
    assert hexed(issued.server) in soon and hexed(issued.device) not in soon
    page = devid(ca, "cert", "list", "--limit", "1", "--offset", "1").stdout
    assert serials(page) == [hexed(issued.server)] and "(2-2 of 3" in page

    assert "duration" in failed(devid(ca, "cert", "list", "--expiring-within", "soon", ok=False))
    assert "EK" in failed(devid(ca, "cert", "list", "--device", "laptop-1", ok=False))


def test_cert_list_json_is_the_admin_api_body(ca: CA, issued: Issued) -> None:
    body = json.loads(devid(ca, "cert", "list", "--json", "--status", "active").stdout)
    assert body["total"] == 2 and body["nextOffset"] is None
    first = body["certificates"][0]
    assert first["serial"] == f"{issued.server.serial_number:x}"
    assert first["serialNumber"] == str(issued.server.serial_number)
    assert (first["issuer"], first["provisioner"], first["status"]) == ("tls", "admin", "active")


def test_cert_show(ca: CA, issued: Issued) -> None:
    out = devid(ca, "cert", "show", hexed(issued.revoked)).stdout
    assert out.splitlines()[0].startswith(f"certificate {hexed(issued.revoked)}")
    for text in ("revoked", "stolen", "admin-token", ek_of("laptop-1"), "laptop-1", "devices"):
        assert text in out, text
    # Decimal works too; --json is the admin API's body; --pem prints the chain.
    body = json.loads(devid(ca, "cert", "show", str(issued.device.serial_number), "--json").stdout)
    assert body["certificate"]["status"] == "active" and body["revocation"] is None
    assert body["device"]["name"] == "laptop-1"
    pem = devid(ca, "cert", "show", hexed(issued.server), "--pem").stdout
    chain = x509.load_pem_x509_certificates(pem.encode())
    root = x509.load_pem_x509_certificate(ca.root_path.read_bytes())
    assert chain[0] == issued.server and chain[-1] == root and len(chain) == 3
    assert "no certificate" in failed(devid(ca, "cert", "show", "0xdeadbeef", ok=False))
    assert "not a number" in failed(devid(ca, "cert", "show", "laptop", ok=False))


def test_device_show_lists_the_device_certificates(ca: CA, issued: Issued) -> None:
    out = devid(ca, "device", "show", ek_of("laptop-1")).stdout
    assert "certificates:   2" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["SERIAL"])
    rows = lines[header + 1 : header + 3]
    assert [r.split()[0] for r in rows] == [hexed(issued.revoked), hexed(issued.device)]
    assert rows[0].split()[1:3] == ["revoked", "agent"] and rows[1].split()[1] == "active"
    assert hexed(issued.server) not in out


def test_a_device_without_certificates_says_so(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        register_device(authority, "laptop-9")
    finally:
        authority.close()
    out = devid(ca, "device", "show", ek_of("laptop-9")).stdout
    assert "certificates:   0" in out and "SERIAL" not in out
    assert devid(ca, "cert", "list").stdout.strip() == "no certificates"


def test_a_data_directory_without_a_ca_is_named(tmp_path: Path) -> None:
    result = run_devid("cert", "list", "--data", tmp_path / "nothing", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"no CA in {tmp_path / 'nothing'}" in result.stderr
