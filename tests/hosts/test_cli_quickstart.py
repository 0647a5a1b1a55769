"""The `devid` command line as an operator meets it: the README's quick start, by subprocess."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import stat
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hosts.core.authority import configured_provisioners
from hosts.core.config import load_config
from plugins.jwk import JWKProvisioner, mint_token
from plugins.manager import PluginManager
from tests.conftest import CA, new_csr

from .helpers import clean_env, devid_serve, free_port, load_pem, run_devid, tls_context


def sha256_of_pem(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def printed_fingerprint(stdout: str) -> str:
    match = re.search(r"root fingerprint:?\s+([0-9a-f]{64})", stdout)
    assert match, stdout
    return match.group(1)


def password_file(ca: CA, tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_bytes(ca.password + b"\n")
    return path


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    """A non-zero exit with a one-line explanation on stderr, not a Python traceback."""
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_help_lists_every_command() -> None:
    result = run_devid("--help")
    for command in ("init", "serve", "token", "plugins", "ca"):
        assert re.search(rf"^\s+(devid )?{command}\b", result.stdout, re.MULTILINE), command


def test_plugins_lists_the_builtin_jwk_provisioner(tmp_path: Path) -> None:
    result = run_devid("plugins", "--data", tmp_path / "no-ca-here")
    assert re.search(r"^jwk: plugins\.jwk", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"provisioner types:\s+.*\bJWK\b", result.stdout), result.stdout


def test_init_without_a_password_generates_one_only_the_owner_can_read(tmp_path: Path) -> None:
    data = tmp_path / "ca"
    result = run_devid("init", "--data", data)
    secret = data / "secrets" / "password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o700
    assert len(secret.read_text().strip()) >= 32
    assert str(secret) in result.stdout
    assert "generated password" in result.stdout
    assert printed_fingerprint(result.stdout) == sha256_of_pem(data / "certs" / "root_ca.crt")


def test_a_second_init_refuses_and_keeps_the_ca(tmp_path: Path) -> None:
    data = tmp_path / "ca"
    run_devid("init", "--data", data)
    root_before = (data / "certs" / "root_ca.crt").read_bytes()
    password_before = (data / "secrets" / "password").read_bytes()
    again = run_devid("init", "--data", data, check=False)
    assert_clean_failure(again, "already initialised")
    assert (data / "certs" / "root_ca.crt").read_bytes() == root_before
    assert (data / "secrets" / "password").read_bytes() == password_before


def test_serve_on_an_empty_directory_initialises_it(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    port = free_port()
    logs = tmp_path / "serve.log"
    with devid_serve(data, port, logs) as process:
        stdout = logs.with_suffix(".out").read_text()
        root = data / "certs" / "root_ca.crt"
        fingerprint = sha256_of_pem(root)
        assert fingerprint in stdout
        assert f"https://127.0.0.1:{port}" in stdout
        assert f"https://localhost:{port}" in stdout
        assert stat.S_IMODE((data / "secrets" / "password").stat().st_mode) == 0o600
        with httpx.Client(verify=tls_context(root)) as http:
            served = http.get(f"https://127.0.0.1:{port}/roots.pem")
        assert served.text == root.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("serve", "--listen", "127.0.0.1:{port}"), id="serve"),
        pytest.param(("token", "--subject", "x.example.com"), id="token"),
    ],
)
def test_a_wrong_password_is_a_clear_error(ca: CA, command: tuple[str, ...]) -> None:
    args = [a.format(port=free_port()) for a in command]
    result = run_devid(
        args[0],
        "--data",
        ca.data_dir,
        *args[1:],
        env=clean_env(DEVID_PASSWORD="not the password"),
        check=False,
    )
    assert_clean_failure(result, "password is wrong")


def test_sigterm_stops_the_server_gracefully(ca: CA, tmp_path: Path) -> None:
    port = free_port()
    logs = tmp_path / "serve.log"
    extra = ("--password-file", str(password_file(ca, tmp_path)))
    with devid_serve(ca.data_dir, port, logs, root=ca.root_path, extra=extra) as process:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0  # generous bound: "promptly", not a benchmark
    assert "Traceback" not in logs.read_text()


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(e, dict) for e in entries)
    return entries


def test_serve_logs_json_lines_and_every_issuance(ca: CA, tmp_path: Path) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    logs = tmp_path / "serve.log"
    extra = ("--password-file", str(password_file(ca, tmp_path)))
    provisioner = configured_provisioners(load_config(ca.data_dir), PluginManager(), None)["admin"]
    assert isinstance(provisioner, JWKProvisioner)
    token = mint_token(
        provisioner.load_private_key(ca.password),
        provisioner="admin",
        subject="logged.example.com",
        audience=f"{url}/1.0/sign",
        now=datetime.now(UTC),
        jti=uuid.uuid4().hex,
        sans=["logged.example.com"],
    )
    with devid_serve(ca.data_dir, port, logs, root=ca.root_path, extra=extra) as process:
        _, _, csr_pem = new_csr("logged.example.com")
        with httpx.Client(verify=tls_context(ca.root_path)) as http:
            r = http.post(f"{url}/1.0/sign", json={"csr": csr_pem, "ott": token})
        assert r.status_code == 201, r.text
        serial = format(load_pem(r.json()["crt"]).serial_number, "x")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    entries = log_lines(logs)
    for entry in entries:
        assert {"time", "level", "logger", "msg"} <= entry.keys(), entry
    issued = [e for e in entries if e["msg"] == "certificate issued" and e["serial"] == serial]
    assert len(issued) == 1, entries
    assert issued[0]["subject"] == "CN=logged.example.com"
    assert issued[0]["provisioner"] == "admin"
    assert any(e["msg"] == "devid CA listening" for e in entries)


def test_the_quick_start_works_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "ca"
    work = tmp_path / "client"
    work.mkdir()
    init = run_devid("init", "--data", data)
    fingerprint = printed_fingerprint(init.stdout)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    root = work / "root.crt"
    crt, key, crl = work / "svc.crt", work / "svc.key", work / "crl.der"
    subject = "svc.example.com"

    with devid_serve(data, port, tmp_path / "serve.log", root=data / "certs" / "root_ca.crt"):
        # A wrong fingerprint is refused and writes nothing.
        refused = run_devid(
            "ca", "root", root, "--ca-url", url, "--fingerprint", "00" * 32, check=False
        )
        assert refused.returncode != 0 and not root.exists()
        run_devid("ca", "root", root, "--ca-url", url, "--fingerprint", fingerprint)
        assert sha256_of_pem(root) == fingerprint

        token = run_devid(
            "token", "--data", data, "--subject", subject, "--san", subject, "--ca-url", url
        ).stdout.strip()
        run_devid("ca", "certificate", subject, crt, key, "--token", token, "--root", root)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        first = x509.load_pem_x509_certificate(crt.read_bytes())
        assert first.subject.rfc4514_string() == f"CN={subject}"
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(crt), str(crt)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

        run_devid("ca", "renew", crt, key, "--ca-url", url, "--root", root)
        renewed = x509.load_pem_x509_certificate(crt.read_bytes())
        assert renewed.serial_number != first.serial_number
        assert renewed.subject == first.subject
        assert renewed.public_key() == first.public_key()

        serial = str(renewed.serial_number)
        revoke_token = run_devid(
            "token", "--data", data, "--revoke", serial, "--ca-url", url
        ).stdout.strip()
        run_devid("ca", "revoke", serial, "--token", revoke_token, "--root", root)
        # A token certificate is the TLS CA's; the Agent CA's CRL (the default) never lists it.
        run_devid("ca", "crl", crl, "--ca-url", url, "--root", root)
        agent_crl = x509.load_der_x509_crl(crl.read_bytes())
        assert agent_crl.get_revoked_certificate_by_serial_number(int(serial)) is None
        run_devid("ca", "crl", crl, "--issuer", "tls", "--ca-url", url, "--root", root)
        revoked = x509.load_der_x509_crl(crl.read_bytes())
        assert "TLS CA" in revoked.issuer.rfc4514_string()
        assert revoked.get_revoked_certificate_by_serial_number(int(serial)) is not None
        assert revoked.get_revoked_certificate_by_serial_number(first.serial_number) is None
