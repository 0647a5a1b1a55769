"""``devid device ...``: the inventory from the command line, and inventory-source plugins.

The CLI runs as a subprocess (the installed ``devid`` next to this interpreter) on a
private copy of a CA data directory. Inventory-source plugins are tested in process with a
registered plugin object, since installing an entry point from a test is heavy-handed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from engine.inventory import DeviceStatus, ek_urn_from_digest
from hosts.core.authority import Authority
from plugins.hookspecs import hookimpl
from plugins.manager import PluginManager
from tests.attestation_fakes import make_ek, make_vendor
from tests.conftest import CA

from .helpers import run_devid


def urn(index: int) -> str:
    return ek_urn_from_digest(bytes([0xFB, 0xEF, 0xBE]) + index.to_bytes(29, "big"))


def devid(ca: CA, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = run_devid("device", *args[:1], "--data", ca.data_dir, *args[1:], check=False)
    if ok:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


# --- add, list, show, disable, enable, remove --------------------------------------------------


def test_the_device_lifecycle(ca: CA, tmp_path: Path) -> None:
    first = urn(1)
    out = devid(
        ca, "add", "--ek", first, "--name", "Robot", "--owner", "alice", "--tag", "lab",
        "--tag", "arm", "--serial", "SN-1",
    ).stdout  # fmt: skip
    assert "Registered device:" in out and first in out and "Robot" in out

    ek = make_ek("ecc", slot=21)
    cert = make_vendor().ek_certificate(ek.public_key)
    pem = tmp_path / "ek.pem"
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    out = devid(ca, "add", "--ek-cert", pem, "--owner", "bob", "--disabled").stdout
    assert ek.urn in out and "EK certificate:" in out and "disabled" in out

    der_ek = make_ek("rsa", slot=22)
    der = tmp_path / "ek.der"
    der.write_bytes(make_vendor().ek_certificate(der_ek.public_key).public_bytes(Encoding.DER))
    assert der_ek.urn in devid(ca, "add", "--ek-cert", der).stdout

    listing = json.loads(devid(ca, "list", "--json").stdout)
    assert listing["total"] == 3
    assert {d["ek"] for d in listing["devices"]} == {first, ek.urn, der_ek.urn}
    disabled = json.loads(devid(ca, "list", "--json", "--status", "disabled").stdout)
    assert [d["ek"] for d in disabled["devices"]] == [ek.urn]
    text = devid(ca, "list", "--owner", "alice").stdout
    assert first in text and ek.urn not in text and "Robot" in text
    assert json.loads(devid(ca, "list", "--json", "--tag", "arm").stdout)["total"] == 1
    assert json.loads(devid(ca, "list", "--json", "--search", "Rob").stdout)["total"] == 1
    page = devid(ca, "list", "--limit", "2").stdout
    assert "of 3" in page

    shown = devid(ca, "show", first).stdout
    assert shown.splitlines()[0] == first
    assert "status:" in shown and "active" in shown and "arm, lab" in shown and "SN-1" in shown

    assert f"Disabled {first}" in devid(ca, "disable", first).stdout
    assert "disabled" in devid(ca, "show", first).stdout
    assert f"Enabled {first}" in devid(ca, "enable", first).stdout
    assert "active" in devid(ca, "show", first).stdout

    assert f"Removed {first}" in devid(ca, "remove", first).stdout
    assert "no device" in failed(devid(ca, "show", first, ok=False))
    assert json.loads(devid(ca, "list", "--json").stdout)["total"] == 2


def test_cli_refusals_are_messages_not_tracebacks(ca: CA) -> None:
    devid(ca, "add", "--ek", urn(2))
    assert "already registered" in failed(devid(ca, "add", "--ek", urn(2), ok=False))
    assert "needs ek" in failed(devid(ca, "add", "--name", "nameless", ok=False))
    assert "urn:ek:sha256" in failed(devid(ca, "add", "--ek", "serial-123", ok=False))
    assert "no device" in failed(devid(ca, "remove", urn(3), ok=False))
    assert "no device" in failed(devid(ca, "disable", urn(3), ok=False))


# --- import -------------------------------------------------------------------------------------


def _csv(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["ek", "ekCertificate", "serial", "name", "owner", "tags"]
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def test_csv_import_reports_each_row_and_is_idempotent(ca: CA, tmp_path: Path) -> None:
    ek = make_ek("ecc", slot=23)
    cert_b64 = base64.b64encode(
        make_vendor().ek_certificate(ek.public_key).public_bytes(Encoding.DER)
    ).decode()
    rows = [
        {"ek": urn(10), "name": "one", "owner": "alice", "tags": "lab;arm"},
        {"ek": "urn:ek:sha256:not-a-digest", "name": "broken"},
        {"ekCertificate": cert_b64, "serial": "SN-3"},
        {"ek": urn(11), "tags": "bad tag!"},
    ]
    source = tmp_path / "devices.csv"
    source.write_text(_csv(rows))
    report_path = tmp_path / "report.json"

    result = devid(ca, "import", source, "--report", report_path, ok=False)
    failed(result)
    # Rows are numbered by their line in the file: the header is line 1.
    assert "row 3: error" in result.stdout and "row 5: error" in result.stdout
    assert "2 added, 0 updated, 0 unchanged, 2 failed" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["added"] == 2 and report["errors"] == 2
    outcomes = {r["row"]: r for r in report["rows"]}
    assert outcomes[2] == {"row": 2, "ek": urn(10), "outcome": "added", "message": ""}
    assert outcomes[3]["outcome"] == "error" and outcomes[3]["ek"] == "urn:ek:sha256:not-a-digest"
    assert outcomes[3]["message"]
    assert outcomes[4]["outcome"] == "added" and outcomes[4]["ek"] == ek.urn
    assert outcomes[5]["outcome"] == "error" and "tag" in outcomes[5]["message"]

    shown = devid(ca, "show", urn(10)).stdout
    assert "arm, lab" in shown and "alice" in shown
    assert "registered" in devid(ca, "show", ek.urn).stdout  # the EK certificate

    again = devid(ca, "import", source, "--report", report_path, ok=False)
    failed(again)
    assert "0 added, 0 updated, 2 unchanged, 2 failed" in again.stdout
    report = json.loads(report_path.read_text())
    assert [r["outcome"] for r in report["rows"]] == ["unchanged", "error", "unchanged", "error"]

    rows[0]["name"] = "renamed"
    source.write_text(_csv([rows[0], rows[2]]))
    updated = devid(ca, "import", source, "--report", report_path)
    assert "0 added, 1 updated, 1 unchanged, 0 failed" in updated.stdout
    assert "renamed" in devid(ca, "show", urn(10)).stdout


def test_json_import_with_a_bad_row(ca: CA, tmp_path: Path) -> None:
    source = tmp_path / "devices.json"
    source.write_text(
        json.dumps(
            {
                "devices": [
                    {"ek": urn(30), "name": "j1", "tags": ["x"]},
                    "not an object",
                    {"ek": urn(31), "colour": "blue"},
                    {"ek": urn(32), "status": "disabled"},
                ]
            }
        )
    )
    report_path = tmp_path / "report.json"
    result = devid(ca, "import", source, "--report", report_path, ok=False)
    failed(result)
    report = json.loads(report_path.read_text())
    assert [r["outcome"] for r in report["rows"]] == ["added", "error", "error", "added"]
    assert report["rows"][1]["ek"] is None
    assert "colour" in report["rows"][2]["message"]
    assert "disabled" in devid(ca, "show", urn(32)).stdout

    again = devid(ca, "import", source, "--report", report_path, ok=False)
    failed(again)
    assert [r["outcome"] for r in json.loads(report_path.read_text())["rows"]] == [
        "unchanged",
        "error",
        "error",
        "unchanged",
    ]


def test_an_unreadable_or_malformed_import_file_is_an_error(ca: CA, tmp_path: Path) -> None:
    assert "cannot read" in failed(devid(ca, "import", tmp_path / "missing.csv", ok=False))
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    assert "not JSON" in failed(devid(ca, "import", broken, ok=False))


def test_sync_without_inventory_plugins_says_so(ca: CA) -> None:
    result = devid(ca, "sync")
    assert "no inventory-source plugin" in result.stdout


# --- inventory-source plugins, in process -------------------------------------------------------


class InventorySource:
    """An inventory-source plugin: an MDM that knows some devices."""

    def __init__(self, records: list[Mapping[str, Any]]) -> None:
        self.records = records
        self.seen: list[Mapping[str, Any]] = []

    @hookimpl
    def devid_inventory_devices(
        self, source_config: Mapping[str, Any]
    ) -> Iterable[Mapping[str, Any]]:
        self.seen.append(source_config)
        return iter(self.records)


def test_the_plugin_manager_collects_every_source() -> None:
    manager = PluginManager(load_entry_points=False)
    first = InventorySource([{"ek": urn(40)}])
    second = InventorySource([{"ek": urn(41)}, {"ek": urn(42)}])
    manager.register(first, name="mdm-a")
    manager.register(second, name="mdm-b")
    records = manager.inventory_devices({"url": "https://mdm.example"})
    assert sorted(r["ek"] for r in records) == sorted([urn(40), urn(41), urn(42)])
    assert first.seen == second.seen == [{"url": "https://mdm.example"}]
    manager.unregister("mdm-b")
    assert [r["ek"] for r in manager.inventory_devices({})] == [urn(40)]


def test_a_disabled_plugin_is_not_asked() -> None:
    manager = PluginManager(load_entry_points=False, disabled=["mdm"])
    source = InventorySource([{"ek": urn(43)}])
    manager.register(source, name="mdm")
    assert manager.inventory_devices({}) == []
    assert source.seen == []


def test_plugin_records_are_upserted_into_the_inventory(authority: Authority) -> None:
    records: list[Mapping[str, Any]] = [
        {"ek": urn(50), "name": "from mdm", "owner": "alice"},
        types.MappingProxyType({"ek": urn(51), "tags": ["mdm"]}),  # any Mapping will do
        {"ek": "garbage"},
        {"ek": urn(52), "status": "disabled"},
    ]
    source = InventorySource(records)
    authority.plugins.register(source, name="test-mdm")
    try:
        report = authority.sync_inventory()
        assert [r.outcome for r in report.rows] == ["added", "added", "error", "added"]
        assert report.rows[2].ek == "garbage" and report.rows[2].message
        device = authority.inventory.get(urn(50))
        assert device.name == "from mdm" and device.owner == "alice"
        assert authority.inventory.get(urn(51)).tags == ("mdm",)
        assert authority.inventory.get(urn(52)).status is DeviceStatus.DISABLED

        again = authority.sync_inventory()
        assert [r.outcome for r in again.rows] == ["unchanged", "unchanged", "error", "unchanged"]

        source.records[0] = {"ek": urn(50), "name": "renamed in mdm", "owner": "alice"}
        third = authority.inventory.upsert_many(
            authority.plugins.inventory_devices(authority.config.inventory)
        )
        assert third.count("updated") == 1 and third.count("unchanged") == 2
        assert authority.inventory.get(urn(50)).name == "renamed in mdm"
    finally:
        authority.plugins.unregister("test-mdm")


def test_upsert_reports_progress_for_every_row(authority: Authority) -> None:
    seen: list[int] = []
    rows = [{"ek": urn(60)}, {"ek": "bad"}, {"ek": urn(61)}]
    report = authority.inventory.upsert_many(rows, progress=seen.append)
    assert seen == [1, 2, 3]
    assert report.to_json()["added"] == 2 and report.to_json()["errors"] == 1


@pytest.mark.parametrize("row", [None, 7, "ek", ["ek"], {"ek": None}, {"ek": 5}])
def test_upsert_survives_any_row(authority: Authority, row: Any) -> None:
    report = authority.inventory.upsert_many([row, {"ek": urn(70)}])
    assert [r.outcome for r in report.rows] == ["error", "added"]
