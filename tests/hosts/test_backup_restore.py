"""``devid backup`` while the CA issues, and ``devid restore`` of what it wrote.

A backup taken under load holds every certificate the CA had answered with before the
backup began, byte for byte; the restored directory serves and issues; a backup changed
by one byte is refused before anything is written; every file is 0600, every folder
0700; a non-empty target needs --force. SCEP's records (a transaction awaiting an
operator, a one-time challenge) are restored with the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from engine.jose import PrivateKey
from hosts.core.authority import configured_provisioners
from hosts.core.config import load_config
from hosts.core.pki import load_issuers
from hosts.store import PENDING, SCEPChallenge, SCEPTransaction, open_sqlite
from hosts.testing.servers import devid_serve
from plugins.jwk import JWKProvisioner, mint_token
from plugins.manager import PluginManager
from tests.conftest import CA, new_csr

from .helpers import load_pem, run_devid, tls_context

#: Certificates issued before the backup starts, and at least during it.
BEFORE = 5
DURING = 3
BOUND_SECONDS = 60


def provisioner_key(data_dir: Path, password: bytes) -> PrivateKey:
    config = load_config(data_dir)
    provisioner = configured_provisioners(config, PluginManager(), None)["admin"]
    assert isinstance(provisioner, JWKProvisioner)
    return provisioner.load_private_key(password)


def sign(http: httpx.Client, url: str, key: PrivateKey, subject: str) -> bytes:
    """One certificate over HTTPS; its DER."""
    _, _, csr_pem = new_csr(subject)
    ott = mint_token(
        key,
        provisioner="admin",
        subject=subject,
        audience=f"{url}/1.0/sign",
        now=datetime.now(UTC),
        jti=uuid.uuid4().hex,
        sans=[subject],
    )
    response = http.post(f"{url}/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert response.status_code == 201, response.text
    return load_pem(response.json()["crt"]).public_bytes(Encoding.DER)


class Issuer(threading.Thread):
    """Issues certificates one after another until stopped; ``received`` maps serial
    (hex) to DER, in the order the CA answered."""

    def __init__(self, url: str, root: Path, key: PrivateKey) -> None:
        super().__init__(daemon=True)
        self.url, self.root, self.key = url, root, key
        self.received: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(verify=tls_context(self.root), timeout=20) as http:
                n = 0
                while not self.stop.is_set():
                    der = sign(http, self.url, self.key, f"load-{n}.example.com")
                    serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
                    with self.lock:
                        self.received[serial] = der
                    n += 1
        except BaseException as exc:
            self.error = exc

    def snapshot(self) -> dict[str, bytes]:
        with self.lock:
            return dict(self.received)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + BOUND_SECONDS
        while len(self.snapshot()) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the CA issued too slowly"
            time.sleep(0.01)


def modes(tree: Path) -> dict[str, int]:
    """The permission bits of *tree* and everything under it."""
    found = {".": stat.S_IMODE(tree.stat().st_mode)}
    for path in tree.rglob("*"):
        found[str(path.relative_to(tree))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(tree: Path) -> None:
    for name, mode in modes(tree).items():
        expected = 0o700 if (tree / name).is_dir() else 0o600
        assert mode == expected, f"{name} has mode {mode:o}"


def password_file(ca: CA, tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_bytes(ca.password + b"\n")
    path.chmod(0o600)
    return path


def test_backup_under_load_restores_every_certificate_and_serves(ca: CA, tmp_path: Path) -> None:
    secret = password_file(ca, tmp_path)
    key = provisioner_key(ca.data_dir, ca.password)
    out = tmp_path / "backup"
    with devid_serve(
        ca.data_dir, tmp_path / "first.log", root=ca.root_path, password_file=secret
    ) as server:
        issuer = Issuer(server.url, ca.root_path, key)
        issuer.start()
        try:
            issuer.wait_for(BEFORE)
            before = issuer.snapshot()  # answered, hence committed, before the backup began
            run_devid("backup", "--data", ca.data_dir, out)
            during = len(issuer.snapshot()) - len(before)
            issuer.wait_for(len(before) + DURING)
        finally:
            issuer.stop.set()
            issuer.join(30)
        assert issuer.error is None, issuer.error
        assert during > 0, "no certificate was issued while the backup ran"
    assert_private(out)
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    assert {"devid.toml", "db/devid.sqlite", "certs/root_ca.crt", "secrets/root_ca.key"} <= listed
    assert not any(path.startswith("tls/") or path.endswith("-wal") for path in listed)

    restored = tmp_path / "restored"
    result = run_devid("restore", out, "--data", restored, "--password-file", secret)
    assert "keys: decrypted with the password" in result.stdout, result.stdout
    assert_private(restored)

    # Every certificate answered before the backup began is there, with the same DER.
    stores = open_sqlite(restored / "db" / "devid.sqlite")
    try:
        for serial, der in before.items():
            record = stores.certificates.get_certificate(serial)
            assert record is not None, f"certificate {serial} is missing from the restore"
            assert record.der == der
        stored = stores.certificates.count_certificates()
    finally:
        stores.close()
    assert stored >= len(before)
    assert f"{stored} certificates" in result.stdout, result.stdout

    # The keys decrypt and belong to their certificates (load_issuers checks both).
    _, issuers = load_issuers(load_config(restored), ca.password)
    assert set(issuers) == {"attestation", "agent", "account", "tls"}
    assert provisioner_key(restored, ca.password) is not None

    # A server on the restored directory answers /health (devid_serve waits for it) and issues.
    with (
        devid_serve(
            restored,
            tmp_path / "second.log",
            root=restored / "certs" / "root_ca.crt",
            password_file=secret,
        ) as server,
        httpx.Client(verify=tls_context(restored / "certs" / "root_ca.crt"), timeout=20) as http,
    ):
        assert http.get(f"{server.url}/health").status_code == 200
        der = sign(http, server.url, key, "after-restore.example.com")
    assert format(x509.load_der_x509_certificate(der).serial_number, "x") not in before


@pytest.mark.parametrize(
    "name", ["devid.toml", "db/devid.sqlite", "secrets/root_ca.key", "certs/tls_ca.crt"]
)
def test_one_changed_byte_is_refused_before_anything_is_written(
    ca: CA, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "backup"
    run_devid("backup", "--data", ca.data_dir, out)
    victim = out / "data" / name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))

    target = tmp_path / "targets" / "restored"
    target.parent.mkdir()
    result = run_devid("restore", out, "--data", target, check=False)
    assert result.returncode != 0
    assert "does not match its checksum" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no staging folder left behind


def test_a_database_that_fails_its_integrity_check_is_refused(ca: CA, tmp_path: Path) -> None:
    """Even when the manifest was rewritten to match a damaged database."""
    out = tmp_path / "backup"
    run_devid("backup", "--data", ca.data_dir, out)
    database = out / "data" / "db" / "devid.sqlite"
    data = bytearray(database.read_bytes())
    data[4096] = 0  # page 2's b-tree page type: no valid type is 0
    database.write_bytes(bytes(data))
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["path"] == "db/devid.sqlite":
            entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    target = tmp_path / "new" / "restored"
    result = run_devid("restore", out, "--data", target, check=False)
    assert result.returncode != 0
    assert "database" in result.stderr, result.stderr
    assert not (tmp_path / "new").exists()  # not even the folder above the target


def test_restore_needs_force_for_a_non_empty_target_and_keeps_it(ca: CA, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    (ca.data_dir / "secrets" / "password").write_bytes(ca.password + b"\n")  # as init makes it
    run_devid("backup", "--data", ca.data_dir, archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(m.mode in (0o600, 0o700) for m in tar.getmembers())
    assert "manifest.json" in names and "SHA256SUMS" in names
    assert "data/secrets/root_ca.key" in names and "data/secrets/password" not in names

    again = run_devid("backup", "--data", ca.data_dir, archive, check=False)
    assert again.returncode != 0 and "--force" in again.stderr, again.stderr
    run_devid("backup", "--data", ca.data_dir, archive, "--force")

    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep-me").write_text("the old data directory\n")
    refused = run_devid("restore", archive, "--data", target, check=False)
    assert refused.returncode != 0
    assert "not empty" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert sorted(os.listdir(target)) == ["keep-me"]

    forced = run_devid("restore", archive, "--data", target, "--force")
    assert "keys: NOT checked" in forced.stdout, forced.stdout
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("occupied.before-restore-")]
    assert len(aside) == 1 and (aside[0] / "keep-me").exists()
    assert (target / "devid.toml").read_bytes() == (ca.data_dir / "devid.toml").read_bytes()
    assert (target / "ek-roots").is_dir()
    assert not (target / "secrets" / "password").exists()
    assert_private(target)
    assert serialization.load_pem_private_key(
        (target / "secrets" / "root_ca.key").read_bytes(), password=ca.password
    )


def test_backup_refuses_absolute_paths_and_a_manifest_escaping_the_directory(
    ca: CA, tmp_path: Path
) -> None:
    config = ca.data_dir / "devid.toml"
    original = config.read_text()
    config.write_text(
        original.replace('path = "db/devid.sqlite"', f'path = "{ca.data_dir}/db/devid.sqlite"')
    )
    refused = run_devid("backup", "--data", ca.data_dir, tmp_path / "absolute", check=False)
    assert refused.returncode != 0 and "absolute path" in refused.stderr, refused.stderr
    assert not (tmp_path / "absolute").exists()
    config.write_text(original)

    out = tmp_path / "backup"
    run_devid("backup", "--data", ca.data_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][0]["path"] = "../escaped"
    (out / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "restored"
    result = run_devid("restore", out, "--data", target, check=False)
    assert result.returncode != 0 and "outside the data directory" in result.stderr, result.stderr
    assert not target.exists() and not (tmp_path / "escaped").exists()


def test_scep_transactions_and_challenges_are_restored(ca: CA, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    transaction = SCEPTransaction(
        provisioner="scep",
        transaction_id="4b1d",
        request_sha256=hashlib.sha256(b"csr").hexdigest(),
        message_type=19,
        status=PENDING,
        subject="CN=printer-7",
        csr_der=b"csr",
        signer_der=b"signer",
        created_at=now,
        updated_at=now,
        reason="awaiting approval",
    )
    challenge = SCEPChallenge(
        provisioner="scep",
        challenge_sha256=hashlib.sha256(b"s3cret").hexdigest(),
        created_at=now,
        expires_at=now + timedelta(hours=1),
        created_by="cli:alice",
        subject="printer-7",
    )
    stores = open_sqlite(load_config(ca.data_dir).store.path)
    try:
        assert stores.scep.add_transaction(transaction)
        stores.scep.add_challenge(challenge)
    finally:
        stores.close()
    out = tmp_path / "backup"
    run_devid("backup", "--data", ca.data_dir, out)
    restored = tmp_path / "restored"
    result = run_devid("restore", out, "--data", restored)
    assert "1 SCEP transactions, 1 SCEP challenges" in result.stdout, result.stdout
    stores = open_sqlite(restored / "db" / "devid.sqlite")
    try:
        assert stores.scep.get_transaction("scep", "4b1d") == transaction
        assert stores.scep.get_challenge("scep", challenge.challenge_sha256) == challenge
        # Still unused in the restored copy: it opens one enrolment there.
        assert stores.scep.use_challenge(
            "scep", challenge.challenge_sha256, now=now, transaction_id="4b1d"
        )
    finally:
        stores.close()
