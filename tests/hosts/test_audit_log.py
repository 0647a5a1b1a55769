"""The audit log: changes made with the CLI, the admin API, devices and the CA itself are
kept with who made them, refusals of note too; the ``devid_audit`` hooks see the same
events; ``devid audit list|export`` and ``GET /api/v1/audit`` read them back."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from engine.acme.effects import Audit
from hosts.core.authority import Authority
from hosts.store import AuditEvent, AuditQuery
from hosts.testing.servers import clean_env
from plugins.hookspecs import hookimpl
from tests.conftest import CA, RunningServer

from .account_helpers import admin, ek_of, issue_device_certificate, register_device
from .device_certs import held_device, refused, renew, renewed, setup_laptop
from .helpers import assert_json_error, client, run_devid

OPERATOR = "ops-alice"
AUDIT = "/api/v1/audit"


def devid(ca: CA, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``devid COMMAND SUB --data DIR ARGS`` run by the OS user OPERATOR."""
    env = clean_env(LOGNAME=OPERATOR, USER=OPERATOR)
    result = run_devid(*args[:2], "--data", ca.data_dir, *args[2:], env=env, check=False)
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def events(authority: Authority, **filters: Any) -> list[AuditEvent]:
    found, total = authority.auditor.find(AuditQuery(limit=1000, **filters))
    assert total == len(found)
    return list(found)


#: The server's own TLS certificate, issued when it starts.
SERVER_CERTIFICATE = "provisioner:tls-server"


def summary(found: list[AuditEvent]) -> list[tuple[str, str, str, str]]:
    """(actor, action, target, result) of each event but the server's own certificate,
    oldest first."""
    return [
        (e.actor, e.action, e.target, e.result)
        for e in reversed(found)
        if e.actor != SERVER_CERTIFICATE
    ]


class Sink:
    """A plugin's ``devid_audit`` hook: every event it is handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def devid_audit(self, event: str, fields: Mapping[str, Any]) -> None:
        self.seen.append((event, dict(fields)))

    def summary(self) -> list[tuple[str, str, str, str]]:
        return [(f["actor"], event, f["target"], f["result"]) for event, f in self.seen]


# --- the command line ---------------------------------------------------------------------


def test_cli_changes_are_kept_as_the_os_user_and_read_back(ca: CA, tmp_path: Path) -> None:
    ek = ek_of("laptop-1")
    devid(ca, "device", "add", "--ek", ek, "--name", "laptop-1", "--tag", "laptops")
    devid(ca, "account", "add", "corp-wifi", "--type", "wifi", "--tag", "laptops")
    devid(ca, "device", "disable", ek)
    actor = f"cli:{OPERATOR}"

    authority = Authority.load(ca.data_dir, ca.password)
    try:
        kept = events(authority)
    finally:
        authority.close()
    assert summary(kept) == [
        (actor, "device.added", ek, "ok"),
        (actor, "account.added", "corp-wifi", "ok"),
        (actor, "device.disabled", ek, "ok"),
    ]
    assert kept[-1].details == {"name": "laptop-1", "status": "active", "tags": ["laptops"]}
    assert kept[0].details == {"changes": {"status": "disabled"}}

    # devid audit list: a header row, newest first, filters.
    out = devid(ca, "audit", "list").stdout.splitlines()
    assert out[0].split() == ["TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAILS"]
    assert [line.split()[2] for line in out[1:]] == [
        "device.disabled",
        "account.added",
        "device.added",
    ]
    assert all(line.split()[1] == actor for line in out[1:])
    out = devid(ca, "audit", "list", "--action", "device.", "--limit", "1").stdout.splitlines()
    assert [line.split()[2] for line in out[1:-1]] == ["device.disabled"]
    assert out[-1] == "(1-1 of 2; --offset for more)"
    assert devid(ca, "audit", "list", "--actor", "admin-token").stdout == "no events\n"
    page = json.loads(devid(ca, "audit", "list", "--target", "corp-wifi", "--json").stdout)
    assert page["total"] == 1 and page["events"][0]["action"] == "account.added"
    assert page["events"][0]["actor"] == actor

    # devid audit export: every matching event, CSV or JSON lines.
    rows = list(csv.DictReader(io.StringIO(devid(ca, "audit", "export", "--format", "csv").stdout)))
    assert [r["action"] for r in rows] == ["device.disabled", "account.added", "device.added"]
    assert rows[2]["target"] == ek and rows[2]["actor"] == actor and rows[2]["result"] == "ok"
    assert json.loads(rows[2]["details"])["name"] == "laptop-1"
    out_file = tmp_path / "audit.jsonl"
    said = devid(ca, "audit", "export", "--action", "device.", "--out", out_file).stdout
    assert said == f"2 events written to {out_file}\n"
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [(e["action"], e["target"]) for e in lines] == [
        ("device.disabled", ek),
        ("device.added", ek),
    ]
    assert set(lines[0]) == {"id", "time", "actor", "action", "target", "result", "details"}


# --- the admin API, devices and the CA --------------------------------------------------------


async def test_an_admin_api_change_is_kept_with_the_admin_and_its_revocations(
    server: RunningServer, ca: CA
) -> None:
    laptop = await setup_laptop(server, ca, account=False)
    ek = ek_of("laptop-1")
    serial = format(laptop.certificate.serial_number, "x")
    async with admin(server, ca) as http:
        r = await http.post(f"/api/v1/devices/{quote(ek, safe='')}/disable")
        assert r.status_code == 200, r.text
        r = await http.get(AUDIT, params={"actor": "admin-token"})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [(e["action"], e["target"], e["result"]) for e in page["events"]] == [
        ("certificate.revoked", serial, "ok"),
        ("device.disabled", ek, "ok"),
    ]
    assert (page["total"], page["offset"], page["nextOffset"]) == (2, 0, None)
    revoked = page["events"][0]["details"]
    assert (revoked["by"], revoked["device"]) == ("device-inventory", ek)
    assert revoked["reason"] == f"the device {ek} was disabled"


async def test_the_admin_api_filters_and_pages_the_log(server: RunningServer, ca: CA) -> None:
    await setup_laptop(server, ca)  # the device (system), corp-wifi (admin), a certificate
    ek = ek_of("laptop-1")

    async def query(**params: str) -> dict[str, Any]:
        async with admin(server, ca) as http:
            r = await http.get(AUDIT, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    everything = await query()
    assert [(e["actor"], e["action"]) for e in everything["events"]] == [
        ("provisioner:devices", "certificate.issued"),
        ("admin-token", "account.added"),
        ("system", "device.added"),
        (SERVER_CERTIFICATE, "certificate.issued"),
    ]
    assert [e["action"] for e in (await query(action="device."))["events"]] == ["device.added"]
    assert (await query(target=ek))["total"] == 1
    assert (await query(actor="provisioner:devices"))["events"][0]["action"] == (
        "certificate.issued"
    )
    assert (await query(result="refused"))["total"] == 0
    assert (await query(until="2000-01-01T00:00:00Z"))["total"] == 0
    assert (await query(since="1h"))["total"] == 4
    page = await query(limit="1", offset="1")
    assert [e["action"] for e in page["events"]] == ["account.added"]
    assert (page["total"], page["nextOffset"]) == (4, 2)
    async with admin(server, ca) as http:
        for params, text in (
            ({"result": "maybe"}, "result must be"),
            ({"since": "yesterday"}, "since must be"),
            ({"limit": "0"}, "limit must be"),
            ({"who": "me"}, "unknown filter who"),
        ):
            r = await http.get(AUDIT, params=params)
            assert text in assert_json_error(r, 400)["message"]
    async with client(server) as anonymous:
        r = await anonymous.get(AUDIT)
    assert r.status_code == 401, r.text


async def test_issuance_renewal_revocation_and_a_refusal_reach_the_log_and_the_hooks(
    server: RunningServer, ca: CA, tmp_path: Path
) -> None:
    sink = Sink()
    server.authority.plugins.register(sink, name="audit-sink")
    ek = ek_of("laptop-1")
    laptop = await setup_laptop(server, ca, account=False)
    first = format(laptop.certificate.serial_number, "x")
    again = await renewed(server, held_device(laptop), tmp_path)
    async with admin(server, ca) as http:
        r = await http.post(
            f"/api/v1/certificates/0x{again.serial}/revoke", json={"reason": "lost"}
        )
    assert r.status_code == 200, r.text
    refused(await renew(server, again, tmp_path), "revoked")

    device = f"device:{ek}"
    expected = [
        ("system", "device.added", ek, "ok"),
        ("provisioner:devices", "certificate.issued", first, "ok"),
        (device, "certificate.renewed", again.serial, "ok"),
        ("admin-token", "certificate.revoked", again.serial, "ok"),
        (device, "renewal.refused", again.serial, "refused"),
    ]
    assert summary(events(server.authority)) == expected
    assert sink.summary() == expected
    added, issued, renewal, revocation, refusal = (fields for _, fields in sink.seen)
    assert added["tags"] == ["laptops"]
    assert issued["serial"] == first and issued["provisioner"] == "devices"
    assert issued["sans"] == [f"permanentIdentifier:{ek}"]
    assert renewal["renewed_from"] == first
    assert revocation["by"] == "admin-token" and revocation["reason"] == "lost"
    assert "revoked" in refusal["error"]
    # The hook's fields are the stored event's details with its names and time.
    (stored,) = events(server.authority, action="certificate.renewed")
    assert renewal["time"] == stored.time.isoformat()
    names = {"time", "actor", "action", "target", "result"}
    assert {k: v for k, v in renewal.items() if k not in names} == dict(stored.details)


def test_a_device_certificate_log_line_names_its_permanent_identifier(
    authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    register_device(authority, "laptop-1")
    with caplog.at_level(logging.INFO, logger="devid.ca"):
        issue_device_certificate(authority, "laptop-1")
    (line,) = [r for r in caplog.records if r.getMessage() == "certificate issued"]
    assert line.__dict__["sans"] == [f"permanentIdentifier:{ek_of('laptop-1')}"]


def test_acme_events_are_kept_under_their_account(authority: Authority) -> None:
    created = {"provisioner": "acme", "account": "acct-1", "eab_kid": None}
    order = {"provisioner": "acme", "account": "acct-1", "order": "order-1", "identifiers": []}
    challenge = {"provisioner": "acme", "authorization": "authz-1", "challenge": "chall-1"}
    authority.acme.audit(
        (
            Audit("acme.account.created", created),
            Audit("acme.order.created", order),
            Audit("acme.challenge.invalid", {**challenge, "error": {"detail": "no answer"}}),
        )
    )
    assert summary(events(authority)) == [
        ("acme:acme/acct-1", "acme.account.created", "acct-1", "ok"),
        ("acme:acme/acct-1", "acme.order.created", "order-1", "ok"),
        ("system", "acme.challenge.invalid", "chall-1", "refused"),
    ]


def test_provisioners_changed_in_devid_toml_are_audited_on_reload(
    ca: CA, authority: Authority
) -> None:
    import tomllib

    import tomli_w

    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    admin_table = next(p for p in config["provisioners"] if p["name"] == "admin")
    config["provisioners"].append({**admin_table, "name": "second"})
    admin_table["max_token_lifetime"] = "2m"
    path.write_text(tomli_w.dumps(config))
    authority.reload()
    config["provisioners"] = [p for p in config["provisioners"] if p["name"] != "second"]
    path.write_text(tomli_w.dumps(config))
    authority.reload()
    assert [(e.actor, e.action, e.target) for e in reversed(events(authority))] == [
        ("config:devid.toml", "provisioner.added", "second"),
        ("config:devid.toml", "provisioner.changed", "admin"),
        ("config:devid.toml", "provisioner.removed", "second"),
    ]
