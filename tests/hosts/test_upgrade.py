"""A data directory made before the TLS CA existed gets it on its first load.

The old layout is rebuilt here from a fresh one: certificates are issued from the Agent
CA the way the previous version issued them (JWK tokens included), then the TLS CA's
files and table are removed and the JWK and http-01 ACME provisioners are put back on
the Agent CA, with an operator's comments in devid.toml.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import tomllib
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.errors import ConfigurationError
from hosts.core.authority import Authority
from hosts.core.upgrade import upgrade_data_dir
from tests.conftest import CA, new_csr, sign_json

from .account_helpers import issue_device_certificate
from .helpers import issued_from, load_pem

OPERATOR_NOTE = "# operator: the acme provisioner serves the intranet web servers\n"


@attrs.frozen
class OldDataDir:
    data_dir: Path
    password: bytes
    config_text: str
    agent_ca: bytes
    root: bytes
    legacy_jwk: x509.Certificate  # issued from the Agent CA by the `admin` JWK provisioner
    device: x509.Certificate


def _token(authority: Authority, ca: CA, subject: str) -> str:
    from datetime import UTC, datetime

    from tests.conftest import make_token_factory, provisioner_of

    key = provisioner_of(authority).load_private_key(ca.password)
    return make_token_factory(key, "https://ca.test", lambda: datetime.now(UTC))(subject)


def make_old_data_dir(ca: CA) -> OldDataDir:
    """*ca* as the previous devid would have left it, with certificates it issued."""
    authority = Authority.load(ca.data_dir, ca.password)
    authority.set_base_urls(["https://ca.test"])
    try:
        # The previous version's JWK provisioner issued from the Agent CA.
        object.__setattr__(authority.provisioners["admin"], "issuer", "agent")
        key, _, csr_pem = new_csr("old-service.example.com")
        response = sign_json(
            authority, {"csr": csr_pem, "ott": _token(authority, ca, "old-service.example.com")}
        )
        legacy = issued_from(key, response).certificate
        device = issue_device_certificate(authority, "laptop-1").certificate
    finally:
        authority.close()
    (ca.data_dir / "certs" / "tls_ca.crt").unlink()
    (ca.data_dir / "secrets" / "tls_ca.key").unlink()
    path = ca.data_dir / "devid.toml"
    text = path.read_text()
    text = re.sub(
        r'\[ca\.intermediates\.tls\]\ncertificate = "[^"]*"\nkey = "[^"]*"\n\n?', "", text
    )
    blocks = text.split("[[provisioners]]\n")
    for i, block in enumerate(blocks):
        if 'name = "admin"' in block:  # an old table that relied on the default issuer
            blocks[i] = block.replace('issuer = "tls"\n', "")
        elif 'name = "acme"' in block:
            blocks[i] = block.replace(
                'issuer = "tls"\n', 'issuer = "agent"  # the only CA there was\n'
            )
    text = "[[provisioners]]\n".join(blocks)
    text = text.replace(
        '[[provisioners]]\ntype = "ACME"\nname = "acme"',
        OPERATOR_NOTE + '[[provisioners]]\ntype = "ACME"\nname = "acme"',
    )
    text = text.replace("[admin]\n", "[admin]\nclient_subjects = []\n")
    assert "tls_ca" not in text and '"tls"' not in text and OPERATOR_NOTE in text
    path.write_text(text)
    return OldDataDir(
        data_dir=ca.data_dir,
        password=ca.password,
        config_text=text,
        agent_ca=(ca.data_dir / "certs" / "agent_ca.crt").read_bytes(),
        root=(ca.data_dir / "certs" / "root_ca.crt").read_bytes(),
        legacy_jwk=legacy,
        device=device,
    )


@pytest.fixture
def old(ca: CA) -> OldDataDir:
    return make_old_data_dir(ca)


def backups(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("devid.toml.bak-*"))


def test_the_old_layout_does_not_load_without_the_upgrade(old: OldDataDir) -> None:
    from hosts.core.config import load_config

    with pytest.raises(ConfigurationError, match=r"older devid.*devid serve"):
        load_config(old.data_dir)


def test_first_load_adds_the_tls_ca_and_moves_the_non_device_provisioners(
    old: OldDataDir, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devid.upgrade"):
        authority = Authority.load(old.data_dir, old.password)
    try:
        root = load_pem(old.root.decode())
        tls = authority.issuers["tls"].certificate
        tls.verify_directly_issued_by(root)
        assert "TLS CA" in tls.subject.rfc4514_string()
        assert {n: p.issuer for n, p in authority.provisioners.items()} == {
            "admin": "tls",
            "acme": "tls",
            "devices": "agent",
        }
        # New JWK certificates come from the TLS CA.
        authority.set_base_urls(["https://ca.test"])
        _, _, csr_pem = new_csr("new.example.com")
        ca = CA(old.data_dir, None, old.password)  # type: ignore[arg-type]
        response = sign_json(
            authority, {"csr": csr_pem, "ott": _token(authority, ca, "new.example.com")}
        )
        assert load_pem(response["crt"]).issuer == tls.subject
        # What the old version issued stays valid: same root and Agent CA, records active.
        assert (old.data_dir / "certs" / "root_ca.crt").read_bytes() == old.root
        assert (old.data_dir / "certs" / "agent_ca.crt").read_bytes() == old.agent_ca
        for cert in (old.legacy_jwk, old.device):
            cert.verify_directly_issued_by(authority.issuers["agent"].certificate)
            record = authority.stores.certificates.get_certificate(format(cert.serial_number, "x"))
            assert record is not None and record.status == "active"
    finally:
        authority.close()
    # The key is encrypted with the CA password, readable by the owner only.
    key_path = old.data_dir / "secrets" / "tls_ca.key"
    assert key_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    serialization.load_pem_private_key(key_path.read_bytes(), password=old.password)
    # devid.toml: the old file backed up; only the issuer lines and the new table differ.
    [backup] = backups(old.data_dir)
    assert backup.read_text() == old.config_text
    new_text = (old.data_dir / "devid.toml").read_text()
    config = tomllib.loads(new_text)
    assert config["ca"]["intermediates"]["tls"] == {
        "certificate": "certs/tls_ca.crt",
        "key": "secrets/tls_ca.key",
    }
    diff = [
        line
        for line in difflib.ndiff(old.config_text.splitlines(), new_text.splitlines())
        if line[:1] in "+-"
    ]
    assert sorted(diff) == sorted(
        [
            "+ [ca.intermediates.tls]",
            '+ certificate = "certs/tls_ca.crt"',
            '+ key = "secrets/tls_ca.key"',
            "+ ",
            '+ issuer = "tls"',
            '- issuer = "agent"  # the only CA there was',
            '+ issuer = "tls"  # the only CA there was',
        ]
    ), diff
    assert OPERATOR_NOTE in new_text
    # One log line per change.
    logged = [r.getMessage() for r in caplog.records if r.name == "devid.upgrade"]
    assert len(logged) == 4, logged
    assert any("created the TLS CA" in line for line in logged)
    assert any("[ca.intermediates.tls]" in line and str(backup) in line for line in logged)
    assert any("'admin' (JWK) moved" in line for line in logged)
    assert any("'acme' (ACME) moved" in line for line in logged)


def test_a_second_load_changes_nothing(old: OldDataDir, caplog: pytest.LogCaptureFixture) -> None:
    Authority.load(old.data_dir, old.password).close()
    caplog.clear()
    config = (old.data_dir / "devid.toml").read_bytes()
    tls = (old.data_dir / "certs" / "tls_ca.crt").read_bytes()
    with caplog.at_level(logging.INFO, logger="devid.upgrade"):
        Authority.load(old.data_dir, old.password).close()
        assert upgrade_data_dir(old.data_dir, old.password) == []
    assert (old.data_dir / "devid.toml").read_bytes() == config
    assert (old.data_dir / "certs" / "tls_ca.crt").read_bytes() == tls
    assert len(backups(old.data_dir)) == 1
    assert not [r for r in caplog.records if r.name == "devid.upgrade"]


def test_concurrent_upgrades_make_one_tls_ca(old: OldDataDir) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(upgrade_data_dir(old.data_dir, old.password))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(1 for r in results if r) == 1
    assert len(backups(old.data_dir)) == 1
    Authority.load(old.data_dir, old.password).close()


def test_a_wrong_password_changes_nothing(old: OldDataDir) -> None:
    with pytest.raises(ConfigurationError, match="password is wrong"):
        Authority.load(old.data_dir, b"not the password")
    assert (old.data_dir / "devid.toml").read_text() == old.config_text
    assert not (old.data_dir / "certs" / "tls_ca.crt").exists()
    assert not (old.data_dir / "secrets" / "tls_ca.key").exists()
    assert backups(old.data_dir) == []


def test_a_provisioner_mixing_device_attest_with_http01_is_left_and_refused(
    old: OldDataDir,
) -> None:
    path = old.data_dir / "devid.toml"
    path.write_text(
        path.read_text().replace(
            'challenges = [\n    "device-attest-01",\n]',
            'challenges = [\n    "device-attest-01",\n    "http-01",\n]',
        )
    )
    assert "http-01" in tomllib.loads(path.read_text())["provisioners"][2]["challenges"]
    with pytest.raises(ConfigurationError, match=r"'devices'.*split it"):
        Authority.load(old.data_dir, old.password)
    config = tomllib.loads(path.read_text())
    assert "tls" in config["ca"]["intermediates"]
    assert config["provisioners"][2]["issuer"] == "agent"


def test_an_unwritable_config_stops_with_a_clear_error_and_the_next_load_finishes(
    old: OldDataDir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copy2", refuse)
        with pytest.raises(ConfigurationError, match=r"cannot update .*devid\.toml"):
            Authority.load(old.data_dir, old.password)
    assert (old.data_dir / "devid.toml").read_text() == old.config_text
    made = (old.data_dir / "certs" / "tls_ca.crt").read_bytes()  # made before the write
    with caplog.at_level(logging.INFO, logger="devid.upgrade"):
        Authority.load(old.data_dir, old.password).close()
    assert (old.data_dir / "certs" / "tls_ca.crt").read_bytes() == made  # kept, not re-made
    assert any("kept the TLS CA" in r.getMessage() for r in caplog.records)
    assert "tls" in tomllib.loads((old.data_dir / "devid.toml").read_text())["ca"]["intermediates"]


def test_configured_provisioners_on_the_account_ca_move_to_the_tls_ca(old: OldDataDir) -> None:
    """The Account CA now issues only through devid's accounts: an old X5C table on it,
    named explicitly or by the old default, moves to the TLS CA."""
    path = old.data_dir / "devid.toml"
    path.write_text(
        path.read_text() + '\n[[provisioners]]\ntype = "X5C"\nname = "wifi"\nissuer = "account"\n'
        'roots = ["certs/agent_ca.crt"]\n'
        '\n[[provisioners]]\ntype = "X5C"\nname = "vpn"\nroots = ["certs/agent_ca.crt"]\n'
    )
    changes = upgrade_data_dir(old.data_dir, old.password)
    assert any("'wifi' (X5C) moved from the Account CA" in line for line in changes), changes
    assert any("'vpn' (X5C) moved from the Account CA" in line for line in changes), changes
    authority = Authority.load(old.data_dir, old.password)
    try:
        assert authority.provisioners["wifi"].issuer == "tls"
        assert authority.provisioners["vpn"].issuer == "tls"
    finally:
        authority.close()
