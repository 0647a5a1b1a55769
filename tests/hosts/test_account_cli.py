"""``devid account add|list|show|remove`` as a subprocess on a private copy of a CA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hosts.core.authority import Authority
from tests.conftest import CA

from .account_helpers import ek_of
from .helpers import run_devid


def devid(ca: CA, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = run_devid("account", *args[:1], "--data", ca.data_dir, *args[1:], check=False)
    if ok:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_the_account_lifecycle(ca: CA) -> None:
    ek = ek_of("laptop-1")
    out = devid(
        ca, "add", "corp-wifi", "--type", "wifi", "--description", "Office Wi-Fi",
        "--cn", "{device.name}", "--san", "dns:{device.name}.wifi.example.com",
        "--san", "{device.ek}", "--validity", "12h", "--key-type", "RSA-2048",
        "--device", ek, "--tag", "laptops", "--tag", "lab", "--no-tpm-key", "--pkcs12",
    ).stdout  # fmt: skip
    assert "Created account:" in out and "corp-wifi" in out
    assert "account:corp-wifi" in out and "RSA-2048" in out and "12h" in out

    shown = json.loads(devid(ca, "show", "corp-wifi", "--json").stdout)
    assert shown["type"] == "wifi"
    assert shown["description"] == "Office Wi-Fi"
    assert shown["commonName"] == "{device.name}"
    assert shown["sans"] == ["dns:{device.name}.wifi.example.com", "{device.ek}"]
    assert shown["validity"] == "12h"
    assert shown["keyType"] == "RSA-2048"
    assert shown["devices"] == [ek]
    assert shown["tags"] == ["lab", "laptops"]
    assert shown["tpmKey"] is False and shown["pkcs12"] is True
    assert shown["eku"] == ["clientAuth"]

    text = devid(ca, "show", "corp-wifi").stdout
    assert "common name:  {device.name}" in text
    assert "no (a key file is allowed)" in text

    devid(ca, "add", "vpn", "--type", "vpn", "--eku", "clientAuth", "--eku", "ipsecIKE")
    header, *listing = devid(ca, "list").stdout.splitlines()
    assert header.split()[:2] == ["STATUS", "NAME"]
    assert len(listing) == 2
    assert listing[0].split()[:3] == ["active", "corp-wifi", "wifi"]
    assert "1 device(s), tag lab, tag laptops" in listing[0]
    assert listing[1].split()[:3] == ["active", "vpn", "vpn"] and "no devices" in listing[1]
    page = json.loads(devid(ca, "list", "--type", "vpn", "--json").stdout)
    assert [a["name"] for a in page["accounts"]] == ["vpn"]
    assert page["accounts"][0]["eku"] == ["clientAuth", "ipsecIKE"]

    assert "Removed account corp-wifi" in devid(ca, "remove", "corp-wifi").stdout
    assert [a["name"] for a in json.loads(devid(ca, "list", "--json").stdout)["accounts"]] == [
        "vpn"
    ]


def test_defaults_and_the_list_of_what_a_device_gets(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        authority.inventory.add({"ek": ek_of("laptop-1"), "tags": ["laptops"]})
    finally:
        authority.close()
    devid(ca, "add", "by-tag", "--type", "generic", "--tag", "laptops")
    devid(ca, "add", "other", "--type", "web", "--tag", "servers")
    devid(ca, "add", "off", "--type", "web", "--tag", "laptops", "--disabled")
    shown = json.loads(devid(ca, "show", "by-tag", "--json").stdout)
    assert shown["commonName"] == "{device.ek}" and shown["sans"] == ["{device.ek}"]
    assert shown["keyType"] == "P-256" and shown["validity"] == "1d"
    assert shown["tpmKey"] is True and shown["pkcs12"] is False
    mine = json.loads(devid(ca, "list", "--device", ek_of("laptop-1"), "--json").stdout)
    assert [a["name"] for a in mine["accounts"]] == ["by-tag"]
    assert "disabled  off" in devid(ca, "list", "--status", "disabled").stdout


def test_a_cn_only_or_sans_only_account(ca: CA) -> None:
    devid(ca, "add", "cn-only", "--type", "wifi", "--cn", "{device.serial}", "--no-sans")
    devid(ca, "add", "sans-only", "--type", "web", "--no-cn", "--san", "email:{device.owner}")
    cn_only = json.loads(devid(ca, "show", "cn-only", "--json").stdout)
    sans_only = json.loads(devid(ca, "show", "sans-only", "--json").stdout)
    assert (cn_only["commonName"], cn_only["sans"]) == ("{device.serial}", [])
    assert (sans_only["commonName"], sans_only["sans"]) == (None, ["email:{device.owner}"])
    error = failed(devid(ca, "add", "nothing", "--type", "web", "--no-cn", "--no-sans", ok=False))
    assert "needs a commonName template or at least one SAN" in error


def test_mistakes_are_reported_without_a_traceback(ca: CA) -> None:
    devid(ca, "add", "corp-wifi", "--type", "wifi")
    assert "already exists" in failed(devid(ca, "add", "corp-wifi", "--type", "vpn", ok=False))
    assert "account name" in failed(devid(ca, "add", "Corp WiFi", "--type", "wifi", ok=False))
    assert "unknown placeholder {device.color}" in failed(
        devid(ca, "add", "x", "--type", "wifi", "--cn", "{device.color}", ok=False)
    )
    assert "say what kind of name" in failed(
        devid(ca, "add", "x", "--type", "wifi", "--san", "{device.name}", ok=False)
    )
    assert "validity must be between 5m and 30d" in failed(
        devid(ca, "add", "x", "--type", "wifi", "--validity", "60d", ok=False)
    )
    assert "urn:ek:sha256" in failed(
        devid(ca, "add", "x", "--type", "wifi", "--device", "laptop-1", ok=False)
    )
    assert "no account named 'nothing'" in failed(devid(ca, "show", "nothing", ok=False))
    assert "no account named 'nothing'" in failed(devid(ca, "remove", "nothing", ok=False))
    bad_type = devid(ca, "add", "x", "--type", "printer", ok=False)
    assert bad_type.returncode == 2 and "invalid choice" in bad_type.stderr


def test_the_cli_lists_account_in_its_help() -> None:
    out = run_devid("--help").stdout
    assert "devid account" in out
    sub = run_devid("account", "add", "--help").stdout
    for option in ("--device", "--tag", "--no-tpm-key", "--pkcs12", "--key-type", "--validity"):
        assert option in sub
