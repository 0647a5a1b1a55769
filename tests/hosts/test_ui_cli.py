"""``devid ui user add|remove|reset|list`` run as commands (subprocesses) on a CA's data
directory: the password from a file or $DEVID_UI_PASSWORD (never an argument), the TOTP
secret printed once, clear refusals, and the audit log naming who acted."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp

from engine.ports import FrozenClock
from hosts.service.audit import Auditor
from hosts.service.operators import Operators
from hosts.store import open_sqlite
from hosts.testing.servers import clean_env, devid_serve, run_devid
from plugins.manager import PluginManager
from tests.conftest import CA

PASSWORD = "a long enough password"
COMMAND_TIMEOUT = 90.0


def ui(ca: CA, *args: str, check: bool = True, **env: str) -> Any:
    return run_devid(
        "ui", "user", *args, "--data", ca.data_dir, env=clean_env(**env), check=check,
        timeout=COMMAND_TIMEOUT,
    )  # fmt: skip


def refused(result: Any, *messages: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def secret_of(output: str) -> tuple[str, str]:
    """The otpauth:// URI and the base32 secret a command printed."""
    uri = next(line.split(": ", 1)[1] for line in output.splitlines() if "otpauth://" in line)
    secret = next(
        line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("TOTP secret")
    )
    return uri, secret


def database(ca: CA) -> Path:
    from hosts.core.config import load_config

    return load_config(ca.data_dir).store.path


def verify(ca: CA, username: str, password: str, secret: str) -> bool:
    stores = open_sqlite(database(ca))
    try:
        clock = FrozenClock(datetime.now(UTC))
        auditor = Auditor(stores.audit, PluginManager(load_entry_points=False), clock)
        operators = Operators(stores.operators, auditor, clock)
        return operators.verify(username, password, pyotp.TOTP(secret).at(clock.now())) is not None
    finally:
        stores.close()


def test_add_list_reset_remove(ca: CA, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    added = ui(ca, "add", "alice", "--role", "admin", "--password-file", str(password_file))
    assert "Operator 'alice' added with role admin." in added.stdout
    assert "authenticator app" in added.stdout
    uri, secret = secret_of(added.stdout)
    assert parse_qs(urlparse(uri).query)["secret"] == [secret]
    assert PASSWORD not in added.stdout + added.stderr
    assert verify(ca, "alice", PASSWORD, secret)

    ui(ca, "add", "bob", "--role", "viewer", DEVID_UI_PASSWORD=PASSWORD + "!")
    listed = ui(ca, "list").stdout.splitlines()
    assert [line.split()[:2] for line in listed] == [["alice", "admin"], ["bob", "viewer"]]
    as_json = json.loads(ui(ca, "list", "--json").stdout)
    assert [(o["username"], o["role"], o["disabled"]) for o in as_json["operators"]] == [
        ("alice", "admin", False),
        ("bob", "viewer", False),
    ]
    assert "secret" not in json.dumps(as_json) and "argon2" not in json.dumps(as_json)

    # Stored as an argon2id hash, never the password.
    with sqlite3.connect(database(ca)) as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM operators")]
    db.close()
    assert all(h.startswith("$argon2id$") for h in hashes) and len(hashes) == 2

    reset = ui(ca, "reset", "alice", "--totp")
    assert "Operator 'alice': new TOTP secret." in reset.stdout
    _, new_secret = secret_of(reset.stdout)
    assert new_secret != secret
    password_file.write_text("another long password")
    ui(ca, "reset", "alice", "--password", "--password-file", str(password_file))
    assert verify(ca, "alice", "another long password", new_secret)

    removed = ui(ca, "remove", "bob")
    assert "Operator 'bob' removed." in removed.stdout
    assert [line.split()[0] for line in ui(ca, "list").stdout.splitlines()] == ["alice"]

    events = json.loads(
        run_devid(
            "audit", "list", "--action", "ui.", "--json", "--data", ca.data_dir,
            timeout=COMMAND_TIMEOUT,
        ).stdout
    )["events"]  # fmt: skip
    assert [(e["action"], e["target"]) for e in reversed(events)] == [
        ("ui.user_added", "alice"),
        ("ui.user_added", "bob"),
        ("ui.user_reset", "alice"),
        ("ui.user_reset", "alice"),
        ("ui.user_removed", "bob"),
    ]
    assert all(e["actor"].startswith("cli:") and e["result"] == "ok" for e in events)


def test_refusals_are_clear(ca: CA) -> None:
    refused(
        ui(ca, "add", "alice", "--role", "root", check=False, DEVID_UI_PASSWORD=PASSWORD),
        "invalid choice: 'root'",
        "viewer",
    )
    refused(
        ui(ca, "add", "Alice", "--role", "viewer", check=False, DEVID_UI_PASSWORD=PASSWORD),
        "invalid username 'Alice'",
        "lowercase letters",
    )
    refused(
        ui(ca, "add", "alice", "--role", "viewer", check=False, DEVID_UI_PASSWORD="too short"),
        "the password is too short (9 characters): at least 12",
    )
    refused(
        ui(ca, "add", "alice", "--role", "viewer", check=False),
        "no password: give --password-file FILE or $DEVID_UI_PASSWORD",
    )
    refused(ui(ca, "remove", "nobody", check=False), "no operator named 'nobody'")
    refused(ui(ca, "reset", "nobody", "--totp", check=False), "no operator named 'nobody'")
    refused(ui(ca, "reset", "nobody", check=False), "nothing to reset: give --password, --totp")
    refused(
        ui(ca, "reset", "nobody", "--totp", "--password-file", "/dev/null", check=False),
        "--password-file gives the new password of --password",
    )
    ui(ca, "add", "alice", "--role", "viewer", DEVID_UI_PASSWORD=PASSWORD)
    refused(
        ui(ca, "add", "alice", "--role", "admin", check=False, DEVID_UI_PASSWORD=PASSWORD),
        "an operator named 'alice' already exists",
    )
    assert "no operators" not in ui(ca, "list").stdout


def test_help_names_the_commands_and_where_the_password_comes_from() -> None:
    top = run_devid("ui", "user", "--help", timeout=COMMAND_TIMEOUT).stdout
    for command in ("add", "remove", "reset", "list"):
        assert command in top
    add = run_devid("ui", "user", "add", "--help", timeout=COMMAND_TIMEOUT).stdout
    assert "--password-file" in add and "DEVID_UI_PASSWORD" in add and "viewer" in add


def test_the_commands_work_while_the_server_runs(ca: CA, tmp_path: Path) -> None:
    env = clean_env(DEVID_PASSWORD=ca.password.decode())
    with devid_serve(ca.data_dir, tmp_path / "serve.log", host="raw", root=ca.root_path, env=env):
        added = ui(ca, "add", "ops", "--role", "operator", DEVID_UI_PASSWORD=PASSWORD)
        _, secret = secret_of(added.stdout)
        assert [line.split()[:2] for line in ui(ca, "list").stdout.splitlines()] == [
            ["ops", "operator"]
        ]
        assert verify(ca, "ops", PASSWORD, secret)
        ui(ca, "remove", "ops")
        assert "no operators" in ui(ca, "list").stdout
